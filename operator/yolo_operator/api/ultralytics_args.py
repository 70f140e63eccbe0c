"""Which Ultralytics train arguments a user may pass through `spec.train.extraArgs`, and in what range.

Names come from Ultralytics' `cfg/default.yaml`; a workloads test checks every name still exists there. Arguments
the operator sets itself (from the spec or the tuning phase) are reserved (contract.RESERVED_TRAIN_ARGS, which the
workload refuses too), so a spec cannot silently fight them.
Ranges are the ones Ultralytics' `cfg.check_cfg` enforces when training starts (CFG_FRACTION_KEYS,
CFG_INT_MIN, ...), so a value that would fail there is refused at `kubectl apply` instead; a workloads test keeps
this table in step with the pinned Ultralytics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yolo_workloads.contract import RESERVED_TRAIN_ARGS

from yolo_operator.api.rules import Rule

EXTRA_TRAIN_ARGS: dict[str, str] = {
    "time": "number", "pretrained": "boolean", "verbose": "boolean", "deterministic": "boolean",
    "single_cls": "boolean", "rect": "boolean", "cos_lr": "boolean", "close_mosaic": "integer", "fraction": "number",
    "profile": "boolean", "freeze": "integer", "multi_scale": "number", "compile": "boolean",
    "overlap_mask": "boolean", "mask_ratio": "integer", "dropout": "number", "val": "boolean", "split": "string",
    "save_json": "boolean", "conf": "number", "iou": "number", "max_det": "integer", "plots": "boolean",
    "lrf": "number", "momentum": "number", "weight_decay": "number", "warmup_epochs": "number",
    "warmup_momentum": "number", "warmup_bias_lr": "number", "box": "number", "cls": "number", "dfl": "number",
    "nbs": "integer", "hsv_h": "number", "hsv_s": "number", "hsv_v": "number", "degrees": "number",
    "translate": "number", "scale": "number", "shear": "number", "perspective": "number", "flipud": "number",
    "fliplr": "number", "bgr": "number", "mosaic": "number", "mixup": "number", "cutmix": "number",
    "copy_paste": "number", "copy_paste_mode": "string", "auto_augment": "string", "erasing": "number",
}  # fmt: skip
"""Other Ultralytics train arguments, passed through unchanged, with the JSON type the API server checks."""


@dataclass(frozen=True)
class Bounds:
    """An inclusive numeric range; `exclusive_minimum` makes the lower bound strict."""

    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False

    def contains(self, value: float) -> bool:
        low_ok = self.minimum is None or (value > self.minimum if self.exclusive_minimum else value >= self.minimum)
        return low_ok and (self.maximum is None or value <= self.maximum)

    def describe(self) -> str:
        low = "" if self.minimum is None else f"{'>' if self.exclusive_minimum else '>='} {self.minimum:g}"
        high = "" if self.maximum is None else f"<= {self.maximum:g}"
        return " and ".join(p for p in (low, high) if p)


FRACTION = Bounds(0.0, 1.0)
"""Ultralytics' CFG_FRACTION_KEYS (and `scale`): between 0.0 and 1.0."""

ARG_BOUNDS: dict[str, Bounds] = {
    **{name: FRACTION for name in (
        "dropout", "lrf", "momentum", "weight_decay", "warmup_momentum", "warmup_bias_lr", "hsv_h", "hsv_s",
        "hsv_v", "translate", "perspective", "flipud", "fliplr", "bgr", "mosaic", "mixup", "cutmix", "copy_paste",
        "erasing", "conf", "iou", "multi_scale", "scale",
    )},
    "fraction": Bounds(0.0, None, exclusive_minimum=True),  # a ratio in (0, 1], or a whole count of images > 1
    "max_det": Bounds(1), "mask_ratio": Bounds(1), "nbs": Bounds(1),  # CFG_INT_MIN
}  # fmt: skip
"""The ranges Ultralytics' check_cfg enforces for the arguments passed through; the rest have none."""

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
    "string": (str,),
}


SPEC_FIELD_OF_RESERVED: dict[str, str] = {
    "task": "spec.task", "mode": "the kind: a YoloTrainJob trains", "model": "spec.model", "data": "spec.data",
    "epochs": "spec.train.epochs", "patience": "spec.train.patience", "batch": "spec.train.batch",
    "imgsz": "spec.train.imgsz", "save": "spec.output.checkpointEveryEpochs",
    "save_period": "spec.output.checkpointEveryEpochs", "cache": "spec.train.cache", "device": "spec.resources.gpus",
    "workers": "spec.train.workers", "project": "spec.output.path", "name": "spec.output.path",
    "exist_ok": "spec.output.path", "save_dir": "spec.output.path", "optimizer": "spec.train.optimizer",
    "seed": "spec.train.seed", "resume": "the run folder: a restarted pod resumes its last checkpoint",
    "amp": "spec.train.amp", "lr0": "spec.train.lr0",
}  # fmt: skip
"""Where in a YoloTrainJob each reserved argument is set instead, so refusing one tells the user what to write
(a unit test keeps it covering RESERVED_TRAIN_ARGS and every `spec.` path a field of the API)."""

_RESERVED_TYPES: dict[str, dict[str, Any]] = {
    **{n: {"type": "integer"} for n in ("epochs", "patience", "imgsz", "save_period", "workers", "seed")},
    **{n: {"type": "boolean"} for n in ("save", "exist_ok", "resume", "amp")},
    **{n: {"type": "number"} for n in ("batch", "lr0")},  # Ultralytics' batch may be a fraction of GPU memory
    **{n: {"x-kubernetes-int-or-string": True} for n in ("device", "cache")},
}
"""The schema types the reserved arguments are declared with (the rest are strings). CEL reads only typed fields,
so they carry the types a user would write them with (Ultralytics' cfg/default.yaml); an off-type value is refused
by the schema, naming the field, instead of by the rule."""


def extra_arg_problem(name: str, value: object) -> str | None:
    """Why `name: value` is not an acceptable extra argument, or None when it is (the arguments the operator sets
    are `_reserved_rule`'s, which says where each is set instead)."""
    if name in RESERVED_TRAIN_ARGS:
        return None
    expected = EXTRA_TRAIN_ARGS.get(name)
    if expected is None:
        return f"{name} is not an Ultralytics train argument this operator passes through"
    ok = isinstance(value, _JSON_TYPES[expected]) and (expected == "boolean" or not isinstance(value, bool))
    if not ok:
        return f"{name} must be of type {expected}"
    return _range_problem(name, value)


def _range_problem(name: str, value: object) -> str | None:
    """Why a number is outside the range Ultralytics accepts for `name`, or None."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    bounds = ARG_BOUNDS.get(name)
    if bounds is not None and not bounds.contains(value):
        return f"{name} must be {bounds.describe()} (Ultralytics refuses {value!r} when training starts)"
    if name == "fraction" and isinstance(value, float) and value > 1:
        return "fraction must be a ratio in (0, 1] or a whole number of images greater than 1"
    return None


def extra_args_schema() -> dict[str, Any]:
    """The OpenAPI schema of extraArgs: each argument's JSON type and Ultralytics' range, checked by the API server."""
    properties: dict[str, Any] = {}
    for name, kind in EXTRA_TRAIN_ARGS.items():
        node: dict[str, Any] = {"type": kind}
        bounds = ARG_BOUNDS.get(name)
        if bounds is not None and bounds.minimum is not None:
            node["exclusiveMinimum" if bounds.exclusive_minimum else "minimum"] = bounds.minimum
        if bounds is not None and bounds.maximum is not None:
            node["maximum"] = bounds.maximum
        properties[name] = node
    for name in sorted(RESERVED_TRAIN_ARGS):  # declared so that a rule can refuse them by name, saying where instead
        properties[name] = {
            **_RESERVED_TYPES.get(name, {"type": "string"}),
            "description": f"Not accepted: set by the operator from {SPEC_FIELD_OF_RESERVED[name]}.",
        }
    return {
        "type": "object",
        "properties": properties,
        "description": "Other Ultralytics train arguments by their Ultralytics name (`mosaic: 0.5`, `cos_lr: true`), "
        "in the ranges Ultralytics accepts. Arguments the operator sets itself (batch, workers, amp, cache, imgsz, "
        "...) are not accepted here.",
    }


def _reserved_rule() -> Rule:
    """The arguments the operator sets, refused by name with the spec field that sets each (the API server builds
    the same words from the names present)."""
    names = sorted(RESERVED_TRAIN_ARGS)
    items = " + ".join(f"(has(self.extraArgs.{n}) ? ' {_reserved_item(n)}' : '')" for n in names)
    return Rule(
        cel="!has(self.extraArgs) || !(" + " || ".join(f"has(self.extraArgs.{n})" for n in names) + ")",
        message=f"{RESERVED_SAID} {', '.join(names)}",
        message_expression=f"'{RESERVED_SAID}' + {items}",
        check=lambda t: not RESERVED_TRAIN_ARGS & set(t.extra_args or {}),
        explain=lambda t: reserved_problem(t.extra_args or {}) or "",
        field="extraArgs",
    )


RESERVED_SAID = "the operator sets these from the spec, not extraArgs:"


def reserved_problem(args: dict[str, Any]) -> str | None:
    """The reserved rule's words for the reserved arguments in `args`, or None when there are none."""
    present = sorted(RESERVED_TRAIN_ARGS & set(args))
    return RESERVED_SAID + "".join(f" {_reserved_item(n)}" for n in present) if present else None


def _reserved_item(name: str) -> str:
    return f"{name} ({SPEC_FIELD_OF_RESERVED[name]})"


def extra_args_rules() -> tuple[Rule, ...]:
    """What the schema's bounds cannot say: a fraction above 1 must be a whole count of images; no argument the
    operator sets itself."""
    return (
        _reserved_rule(),
        Rule(
            cel="!has(self.extraArgs) || !has(self.extraArgs.fraction) || self.extraArgs.fraction <= 1.0 || "
            "self.extraArgs.fraction == double(int(self.extraArgs.fraction))",
            message="fraction must be a ratio in (0, 1] or a whole number of images greater than 1",
            check=lambda t: _range_problem("fraction", (t.extra_args or {}).get("fraction")) is None,
            field="extraArgs.fraction",
        ),
    )
