"""The tuning cache's pure half: which key a result is stored under, and how entries are encoded.

A tuning result holds for the same GPU product, GPU count, model, image size, data set (size), CPU budget and
search space: the key is a readable prefix plus a hash of exactly those. The controller keeps entries in one
ConfigMap per namespace (`CACHE_CONFIG_MAP`), one data key per entry; the local runner may keep them in a file.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError
from yolo_workloads.contract import TuneResult

from yolo_operator.api.sources import Source
from yolo_operator.api.train_job import YoloTrainJobSpec
from yolo_operator.quantity import parse_quantity
from yolo_operator.render.train_job import batch_rule_name, nominal_batch, warmup_epochs

CACHE_CONFIG_MAP = "yolo-tuning-cache"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
_UNSAFE = re.compile(r"[^-._a-zA-Z0-9]+")


def _source_identity(source: Source) -> str:
    """A source by URI, and by its content where the spec declares it (the same URI may be rewritten)."""
    return f"source:{source.uri}" + (f"@sha256:{source.sha256}" if source.sha256 else "")


def _data_identity(spec: YoloTrainJobSpec) -> str:
    if spec.data.shapes is not None:
        shapes = spec.data.shapes
        return f"shapes:{shapes.images}" + (f":{shapes.variant}" if shapes.variant != "shapes" else "")
    if spec.data.source is not None:
        return _source_identity(spec.data.source) + f":{spec.data.source.yaml}"
    assert spec.data.volume is not None
    return f"volume:{spec.data.volume.claim_name}/{spec.data.volume.path}"


def _model_identity(spec: YoloTrainJobSpec) -> str:
    """The architecture trained from scratch, or the fine-tuned weights (their architecture is the checkpoint's,
    and a fine-tuned model's head follows the data's classes: the data identity covers that)."""
    if spec.model.architecture:
        return spec.model.architecture
    if spec.model.source is not None:
        return "finetune:" + _source_identity(spec.model.source)
    assert spec.model.weights is not None
    return f"weights:{spec.model.weights.claim_name}/{spec.model.weights.path}"


_NOT_IN_KEY = {"reuse", "time_budget_seconds", "max_trials"}
"""Tuning fields that do not change what tuning finds."""


def _search_identity(spec: YoloTrainJobSpec) -> dict[str, Any]:
    """The tuning fields that change what tuning finds, with the augmentation paths it may measure (set or
    derived) only when they are more than the CPU path: keys of such jobs stay as they were before the field
    existed, so their cached results are still found."""
    search: dict[str, Any] = spec.tuning.model_dump(mode="json", exclude=_NOT_IN_KEY | {"augmentation"})
    if spec.tuning.batch_rule == "Auto":  # the rule it stands for in this job: a key as that rule's own
        search["batch_rule"] = batch_rule_name(spec)
    offered = spec.offered_augmentation()
    if offered != ["cpu"]:
        search["augmentation"] = offered
    return search


def cache_key(spec: YoloTrainJobSpec, gpu_product: str) -> str:
    """A ConfigMap data key (`[-._a-zA-Z0-9]+`, at most 253 characters) naming what a tuning result depends on."""
    identity = {
        "gpuProduct": gpu_product,
        "gpus": spec.resources.gpus,
        "model": _model_identity(spec),
        "imgsz": spec.train.imgsz,
        "data": _data_identity(spec),
        "cpu": str(parse_quantity(spec.resources.cpu).normalize()),
        "memory": str(parse_quantity(spec.resources.memory).normalize()),
        "search": _search_identity(spec),
        "fixed": spec.train.model_dump(mode="json", include={"batch", "workers", "amp", "cache"}),
        # The batch sizes that keep the defaults' trajectory depend on these.
        "nbs": nominal_batch(spec),
        "warmup": warmup_epochs(spec),
    }
    if spec.train.augmentation is not None:  # trials measured that path (keys of jobs without it stay as they were)
        identity["augmentation"] = spec.train.augmentation
    if spec.effective_task() != "detect":  # another trainer, other labels; detection keys stay as they were
        identity["task"] = spec.effective_task()
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    model = _model_identity(spec).removesuffix(".yaml").rsplit("/", 1)[-1]
    readable = _UNSAFE.sub("_", f"{gpu_product}.{model}.{spec.train.imgsz}")[:200]
    return f"{readable}.{digest}"


def expected_gpu_product(spec: YoloTrainJobSpec, node_products: Iterable[str]) -> str | None:
    """The GPU product a pod of this spec will get, if it is certain before scheduling: pinned by the
    nodeSelector, or the only product among the eligible nodes. "cpu" for CPU-only pods."""
    if spec.resources.gpus == 0:
        return "cpu"
    pinned = (spec.resources.node_selector or {}).get(GPU_PRODUCT_LABEL)
    if pinned:
        return pinned
    products = set(node_products)
    return products.pop() if len(products) == 1 else None


def encode_entry(result: TuneResult) -> str:
    return result.model_dump_json(exclude_none=True)


def decode_entry(text: str | None) -> TuneResult | None:
    """A stored entry, or None when absent or unreadable (a corrupt entry is just a cache miss)."""
    if not text:
        return None
    try:
        return TuneResult.model_validate_json(text)
    except (ValidationError, ValueError):
        return None
