"""The YoloInferenceService kind: a batched, GPU-resident YOLO detection service that scales on load."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints
from yolo_workloads.contract import ServeConfig, Task

from yolo_operator.api.common import (
    API_VERSION,
    SERVICE_NAME_RULE,
    ApiModel,
    Condition,
    ModelVolume,
    Name,
    Resources,
    ServiceObjectMeta,
    StatusModel,
    defaulted,
)
from yolo_operator.api.pod import PodOverrides
from yolo_operator.api.rules import Rule, exactly_one
from yolo_operator.api.sources import SourceCache, WeightsSource

ServicePhase = Literal["Pending", "Tuning", "Ready", "Degraded", "Failed"]


class ServeModel(ApiModel):
    """The weights to serve: a file on a volume, one by URI, or the best weights of a finished YoloTrainJob.
    Exactly one."""

    weights: ModelVolume | None = None
    """Weights (`.pt`) on a PersistentVolumeClaim."""
    source: WeightsSource | None = None
    """Weights (`.pt`) by URI (`s3://`, `https://`, `pvc://`), fetched by each replica before it starts (once
    per content when `spec.sourceCache` is shared)."""
    from_train_job: Name | None = None
    """Name of a YoloTrainJob in this namespace; served once it has succeeded, from its output volume."""

    __rules__ = (exactly_one("weights", "source", "from_train_job"),)


class ScalingPolicy(ApiModel):
    """A limit on how much replicas may change in a period, as in autoscaling/v2 HPAScalingPolicy."""

    type: Literal["Pods", "Percent"]
    value: int = Field(gt=0)
    period_seconds: int = Field(gt=0, le=1800)


class ScalingRules(ApiModel):
    """Scaling in one direction, as in autoscaling/v2 HPAScalingRules."""

    stabilization_window_seconds: int | None = Field(default=None, ge=0, le=3600)
    """Recommendations over this window are considered; defaults 0 s up, 300 s down."""
    select_policy: Literal["Max", "Min", "Disabled"] = "Max"
    policies: list[ScalingPolicy] | None = Field(default=None, max_length=10)
    """Defaults as the HPA's: up 100% or 4 pods per 15 s (the larger); down 100% per 15 s."""


class Behavior(ApiModel):
    """Scale-up and scale-down behaviour, as in autoscaling/v2 HorizontalPodAutoscalerBehavior."""

    scale_up: ScalingRules | None = None
    scale_down: ScalingRules | None = None


class PrometheusSource(ApiModel):
    """A PromQL query returning one number: the metric's mean over the service's replicas."""

    url: Annotated[str, StringConstraints(pattern=r"^https?://.+")]
    """Base URL of the Prometheus HTTP API, e.g. http://prometheus.monitoring:9090."""
    query: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    """PromQL; `$namespace` and `$service` are substituted."""


class Autoscaling(ApiModel):
    """Replicas follow measured load with the HPA's algorithm, run by the operator."""

    enabled: bool = False
    min_replicas: int = Field(default=1, ge=1, le=1000)
    max_replicas: int = Field(default=4, ge=1, le=1000)
    metric: Literal["gpuUtilization", "queueDepth"] = "gpuUtilization"
    """gpuUtilization: mean NVML utilisation of the replicas' GPUs (percent). queueDepth: requests waiting per
    replica."""
    target: float = Field(default=70, gt=0)
    """Target value of the metric per replica (percent for gpuUtilization)."""
    source: Literal["pods", "prometheus"] = "pods"
    """pods: scrape each ready replica's /metrics. prometheus: run `prometheus.query`."""
    prometheus: PrometheusSource | None = None
    behavior: Behavior | None = None

    __rules__ = (
        Rule(
            cel="self.minReplicas <= self.maxReplicas",
            message="minReplicas must not exceed maxReplicas",
            check=lambda a: a.min_replicas <= a.max_replicas,
            field="minReplicas",
        ),
        Rule(
            cel="self.source != 'prometheus' || has(self.prometheus)",
            message="source prometheus needs prometheus.url and prometheus.query",
            check=lambda a: a.source != "prometheus" or a.prometheus is not None,
            field="prometheus",
        ),
        Rule(
            cel="self.metric != 'gpuUtilization' || self.target <= 100.0",
            message="target is a percentage for gpuUtilization and must be at most 100",
            check=lambda a: a.metric != "gpuUtilization" or a.target <= 100,
            field="target",
        ),
    )


def _served(name: str) -> Any:
    """The serving workload's own default for a field (`contract.ServeConfig`): one value, never a copy."""
    return ServeConfig.model_fields[name].default


class Serving(ApiModel):
    """How each replica batches and runs the model."""

    imgsz: int = Field(default=_served("imgsz"), ge=32, le=4096, multiple_of=32)
    """Inference image size; a multiple of 32."""
    half: bool = _served("half")
    """fp16 on GPU."""
    max_batch_size: int = Field(default=_served("max_batch_size"), ge=1, le=1024)
    """Largest batch the dynamic batcher forms."""
    max_queue_delay_ms: float = Field(default=_served("max_queue_delay_ms"), ge=0, le=1000)
    """Longest a request waits for its batch to fill."""
    max_queue_size: int = Field(default=_served("max_queue_size"), ge=1, le=100_000)
    """Requests waiting beyond this are answered 503 with Retry-After."""
    conf: float = Field(default=_served("conf"), ge=0, le=1)
    """Confidence threshold."""
    iou: float = Field(default=_served("iou"), ge=0, le=1)
    """NMS IoU threshold."""
    port: int = Field(default=_served("port"), ge=1024, le=65535)
    """Container port of the HTTP server (also serves /metrics)."""
    workers: int = Field(default=_served("workers"), ge=1, le=16)
    """HTTP server processes per replica sharing its GPU, each with its own model copy and batcher. One process
    is bound by one core of Python (HTTP parsing, batching); more keep a fast GPU fed. Give the pod about one
    CPU per worker plus two; /metrics merges all workers."""


class ServeTuning(ApiModel):
    """A short sweep at start of maxBatchSize and maxQueueDelayMs under synthetic load."""

    enabled: bool = False
    latency_slo_ms: float = Field(default=100, gt=0, le=60_000)
    """Highest acceptable p99 latency; the sweep keeps the fastest setting under it."""


class ServicePort(ApiModel):
    """How the service is exposed."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    port: int = Field(default=80, ge=1, le=65535)


class YoloInferenceServiceSpec(ApiModel):
    """A YOLO service: detection, segmentation, pose, oriented boxes or classification."""

    task: Task | None = None
    """What the served model does: `detect`, `segment`, `pose`, `obb` or `classify`. Unset: the task of
    `model.fromTrainJob`'s job, else `detect`. Weights of another task are refused when a replica loads them."""
    model: ServeModel
    """The weights to serve."""
    replicas: int = Field(default=1, ge=0, le=1000)
    """Replicas when autoscaling is off (driven by `kubectl scale`, an HPA or KEDA through the scale
    subresource)."""
    autoscaling: Autoscaling = defaulted(Autoscaling)
    serving: Serving = defaulted(Serving)
    tuning: ServeTuning = defaulted(ServeTuning)
    resources: Resources = defaulted(Resources)
    service: ServicePort = defaulted(ServicePort)
    pod_overrides: PodOverrides | None = None
    """Env, envFrom, extra volumes, service account, pod labels and annotations, affinity, topology spread."""
    source_cache: SourceCache | None = None
    """Where weights fetched by URI are kept (a ReadWriteMany claim lets every replica share one download);
    each pod fetches its own when unset."""


class ServingStatus(StatusModel):
    """The serving settings in effect (after serving tuning)."""

    max_batch_size: int | None = None
    max_queue_delay_ms: float | None = None
    imgsz: int | None = None
    half: bool | None = None


class YoloInferenceServiceStatus(StatusModel):
    """What the operator observed. Written only by the operator."""

    phase: ServicePhase | None = None
    replicas: int | None = None
    ready_replicas: int | None = None
    desired_replicas: int | None = None
    selector: str | None = None
    """Label selector of the pods, for the scale subresource."""
    current_metric_value: float | None = None
    gpu_utilization: float | None = None
    """Mean GPU utilisation of the replicas, percent."""
    last_scale_time: str | None = None
    url: str | None = None
    model_path: str | None = None
    conditions: list[Condition] | None = None
    observed_generation: int | None = None
    serving: ServingStatus | None = None
    message: str | None = None


class YoloInferenceService(ApiModel):
    """Serve a YOLO detector over HTTP (Open Inference Protocol v2), autoscaled on measured load."""

    model_config = ApiModel.model_config | {"extra": "ignore"}

    api_version: Literal["yolo-operator.io/v1alpha1"] = API_VERSION
    kind: Literal["YoloInferenceService"] = "YoloInferenceService"
    metadata: ServiceObjectMeta
    spec: YoloInferenceServiceSpec
    status: YoloInferenceServiceStatus | None = None

    __rules__ = (SERVICE_NAME_RULE,)
