"""Which Ultralytics train arguments a user may pass through `spec.train.extraArgs`.

Names come from Ultralytics' `cfg/default.yaml`; a workloads test checks every name still exists there. Arguments
the operator sets itself (from the spec or the tuning phase) are reserved, so a spec cannot silently fight them.
"""

RESERVED_ARGS: tuple[str, ...] = (
    "task", "mode", "model", "data", "epochs", "patience", "batch", "imgsz", "save", "save_period", "cache",
    "device", "workers", "project", "name", "exist_ok", "optimizer", "seed", "resume", "amp", "lr0",
)  # fmt: skip
"""Set by the operator from spec.train, spec.tuning and spec.output."""

EXTRA_TRAIN_ARGS: tuple[str, ...] = (
    "time", "pretrained", "verbose", "deterministic", "single_cls", "rect", "cos_lr", "close_mosaic", "fraction",
    "profile", "freeze", "multi_scale", "compile", "overlap_mask", "mask_ratio", "dropout", "val", "split",
    "save_json", "conf", "iou", "max_det", "plots", "lrf", "momentum", "weight_decay", "warmup_epochs",
    "warmup_momentum", "warmup_bias_lr", "box", "cls", "dfl", "nbs", "hsv_h", "hsv_s", "hsv_v", "degrees",
    "translate", "scale", "shear", "perspective", "flipud", "fliplr", "bgr", "mosaic", "mixup", "cutmix",
    "copy_paste", "copy_paste_mode", "auto_augment", "erasing",
)  # fmt: skip
"""Other Ultralytics train arguments, passed through unchanged."""
