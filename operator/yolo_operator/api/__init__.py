"""The two custom resources as typed models: the single source of truth for the CRDs and for validation.

Pure: imports nothing that talks to a cluster or a GPU.
"""

from yolo_operator.api.common import (
    API_VERSION,
    GROUP,
    VERSION,
    Condition,
    ModelVolume,
    Resources,
    SpecError,
    parse_resource,
)
from yolo_operator.api.inference_service import (
    YoloInferenceService,
    YoloInferenceServiceSpec,
    YoloInferenceServiceStatus,
)
from yolo_operator.api.train_job import YoloTrainJob, YoloTrainJobSpec, YoloTrainJobStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "Condition",
    "ModelVolume",
    "Resources",
    "SpecError",
    "YoloInferenceService",
    "YoloInferenceServiceSpec",
    "YoloInferenceServiceStatus",
    "YoloTrainJob",
    "YoloTrainJobSpec",
    "YoloTrainJobStatus",
    "parse_resource",
]
