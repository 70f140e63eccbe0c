"""Kopf wiring only, one module per concern: `runtime` (the shared cache and work queue start and stop with the
operator; the custom resources' bodies are kept), `train_job` and `inference_service` (which watch events, child
changes and periodic resyncs queue which key; the resync threads). The reconcilers they queue work for live in
`controllers/`, the queue, cache and resync in `runtime/`.

Convention: each module exposes `register(registry, ...)`; `register` below calls them in the order Kopf needs.
"""

from __future__ import annotations

import kopf

from yolo_operator.controllers.inference_service import InferenceController
from yolo_operator.controllers.train_job import TrainJobController
from yolo_operator.handlers import inference_service, runtime, train_job
from yolo_operator.runtime.manager import Runtime

__all__ = ["inference_service", "register", "runtime", "train_job"]


def register(
    registry: kopf.OperatorRegistry, shared: Runtime, trains: TrainJobController, serves: InferenceController
) -> None:
    """Everything into one registry: the runtime's hooks first (a controller's event handler queues a key only
    after the body is stored: Kopf runs one event's handlers in registration order), then both controllers'."""
    runtime.register(registry, shared)
    train_job.register(registry, trains, shared)
    inference_service.register(registry, serves, shared)
