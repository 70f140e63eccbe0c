"""Synthetic inputs: scenes of coloured rectangles, and random weights whose outputs depend on the image.

Ultralytics' default initialisation makes activations vanish through an untrained yolov8n (the head sees ~1e-7),
so a model built from `yolov8n.yaml` outputs the same constant scores for every image: useless to check that the
server matches `predict`, and NMS gets no realistic work. `make_signal_weights` re-initialises convolutions
(Kaiming) and scales the class head so scores vary with the input, then saves a normal Ultralytics `.pt`. Any
task's architecture works (`yolov8n-seg.yaml`, `-pose`, `-obb`, `-cls`): the task comes from the YAML, and a
classify head's linear layer is scaled so its softmax is far from uniform.
Used by tests, the serving tuner's synthetic load, `yolo-workload bench` and the load generator.
"""

from __future__ import annotations

import numpy as np


def scene(height: int, width: int, rng: np.random.Generator, shapes: int = 8) -> np.ndarray:
    """An RGB uint8 HWC image: a flat background with filled rectangles and some noise."""
    img = np.empty((height, width, 3), np.uint8)
    img[:] = rng.integers(0, 255, 3, dtype=np.uint8)
    for _ in range(shapes):
        x0, y0 = int(rng.integers(0, max(width - 4, 1))), int(rng.integers(0, max(height - 4, 1)))
        x1 = min(width, x0 + int(rng.integers(4, max(width // 2, 5))))
        y1 = min(height, y0 + int(rng.integers(4, max(height // 2, 5))))
        img[y0:y1, x0:x1] = rng.integers(0, 255, 3, dtype=np.uint8)
    noise = rng.integers(-8, 9, img.shape, dtype=np.int16)
    out: np.ndarray = np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return out


def encode(img_rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """Encode an RGB image as JPEG or PNG bytes (torchvision, so OpenCV is not needed)."""
    import torch
    import torchvision

    t = torch.from_numpy(np.ascontiguousarray(img_rgb.transpose(2, 0, 1)))
    data = torchvision.io.encode_jpeg(t, quality=quality) if fmt == "jpeg" else torchvision.io.encode_png(t)
    return bytes(data.numpy().tobytes())


def make_signal_weights(
    path: str, architecture: str = "yolov8n.yaml", seed: int = 0, cls_bias: float = -2.0, cls_scale: float = 100.0
) -> str:
    """Save random weights whose detections depend on the image (see module doc). Returns `path`."""
    import torch

    from yolo_workloads.serve.pipeline import ensure_offline

    ensure_offline()
    from ultralytics.models import YOLO  # the top level exports it only through a lazy __getattr__

    torch.manual_seed(seed)
    yolo = YOLO(architecture)  # the task from the YAML's head
    model = yolo.model
    assert isinstance(model, torch.nn.Module)  # built from the YAML above (Ultralytics types it as str | None too)
    for mod in model.modules():
        if isinstance(mod, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
    head = model.model[-1]
    if hasattr(head, "cv3"):
        for seq in head.cv3:
            seq[-1].bias.data.normal_(cls_bias, 0.5)
            seq[-1].weight.data.mul_(cls_scale)
    elif hasattr(head, "linear"):  # classify: pooled features are ~1e-2, so logits spread over a few units
        torch.nn.init.normal_(head.linear.weight, std=cls_scale / 10)
    yolo.save(path)
    return path
