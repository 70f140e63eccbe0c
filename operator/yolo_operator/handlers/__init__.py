"""Thin Kopf wiring, one module per kind: parse → decide → apply → one status patch.

Convention: each module exposes `register(registry, ...)`; `main.build_registry` calls them.
"""

from yolo_operator.handlers import inference_service, train_job

__all__ = ["inference_service", "train_job"]
