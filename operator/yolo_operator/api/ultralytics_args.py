"""Which Ultralytics train arguments a user may pass through `spec.train.extraArgs`.

Names come from Ultralytics' `cfg/default.yaml`; a workloads test checks every name still exists there. Arguments
the operator sets itself (from the spec or the tuning phase) are reserved, so a spec cannot silently fight them.
"""

RESERVED_ARGS: tuple[str, ...] = (
    "task", "mode", "model", "data", "epochs", "patience", "batch", "imgsz", "save", "save_period", "cache",
    "device", "workers", "project", "name", "exist_ok", "optimizer", "seed", "resume", "amp", "lr0",
)  # fmt: skip
"""Set by the operator from spec.train, spec.tuning and spec.output."""

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

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
    "string": (str,),
}


def extra_arg_problem(name: str, value: object) -> str | None:
    """Why `name: value` is not an acceptable extra argument, or None when it is."""
    if name in RESERVED_ARGS:
        return f"{name} is set by the operator from the spec (spec.train, spec.tuning, spec.output), not extraArgs"
    expected = EXTRA_TRAIN_ARGS.get(name)
    if expected is None:
        return f"{name} is not an Ultralytics train argument this operator passes through"
    ok = isinstance(value, _JSON_TYPES[expected]) and (expected == "boolean" or not isinstance(value, bool))
    return None if ok else f"{name} must be of type {expected}"
