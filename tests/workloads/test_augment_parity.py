"""`augmentation: gpu` against Ultralytics' own training augmentation, on the same images (issue 23).

The GPU path is plain torch and numpy, so it runs here on the CPU. Both pipelines augment the same data set many
times: square and letterboxed (wide) images, with mosaic open (Ultralytics' default) and closed (its last
`close_mosaic` epochs); the statistics a detector learns from must agree: boxes an image, box sizes and positions,
classes, how much of the image is border grey, the pixels' colour. And a training through `yolo-workload train`
with it ends with the summary and a model, and a job asking for what the GPU path lacks is refused by name.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from yolo_workloads.contract import TrainConfig
from yolo_workloads.train.gpu_augment import Boxes, GpuAugment, Hyper, draw, move_boxes, on_device, tiles, warp_images

pytestmark = pytest.mark.workloads

IMGSZ = 160
SAMPLES = 384


@pytest.fixture(scope="module")
def mixed_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 shapes images at 160 px, every other one squeezed to 160 x 96 (labels are normalised: still right)."""
    from yolo_workloads.datasets.shapes import generate

    root = tmp_path_factory.mktemp("mixed")
    yaml_path = generate(root / "set", n=48, imgsz=IMGSZ, val=4, seed=3, processes=1)
    for i, image in enumerate(sorted((root / "set" / "images" / "train").iterdir())):
        if i % 2:
            im = cv2.imread(str(image))
            cv2.imwrite(str(image), cv2.resize(im, (IMGSZ, 96), interpolation=cv2.INTER_AREA))
    return yaml_path


def _dataset(yaml_path: Path, mosaic: float, cache: str | bool = False) -> Any:
    from yolo_workloads import offline

    offline.apply()
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    cfg = get_cfg(overrides={"imgsz": IMGSZ, "data": str(yaml_path), "mosaic": mosaic, "cache": cache})
    data = check_det_dataset(str(yaml_path))
    return cfg, build_yolo_dataset(cfg, data["train"], 16, data, mode="train", rect=False, stride=32)


def _ultralytics(yaml_path: Path, mosaic: float) -> dict[str, np.ndarray]:
    random.seed(0)
    np.random.seed(0)
    _, ds = _dataset(yaml_path, mosaic)
    samples = [ds[i % len(ds)] for i in range(SAMPLES)]
    return _stats(
        [s["img"].numpy() for s in samples],
        [s["bboxes"].numpy() for s in samples],
        [s["cls"].numpy().reshape(-1) for s in samples],
    )


def _letterbox_only(ds: Any, cfg: Any) -> Any:
    """The data set as the GPU path's loader reads it (trainer._GpuAugmented.build_dataset)."""
    ds.augment = False
    ds.transforms = ds.build_transforms(hyp=cfg)
    ds.augment = True
    return ds


def _gpu_path(yaml_path: Path, mosaic: float) -> dict[str, np.ndarray]:
    cfg, ds = _dataset(yaml_path, mosaic)
    _letterbox_only(ds, cfg)
    augment = GpuAugment(Hyper.from_args(cfg), seed=0)
    images, boxes, classes = [], [], []
    order = np.random.default_rng(0).permutation(SAMPLES) % len(ds)
    for start in range(0, SAMPLES, 32):
        batch = ds.collate_fn([ds[int(i)] for i in order[start : start + 32]])
        out = augment(batch, torch.device("cpu"))
        idx = out["batch_idx"].numpy()
        for b in range(len(out["img"])):
            images.append(out["img"][b].round().clamp(0, 255).byte().numpy())
            boxes.append(out["bboxes"].numpy()[idx == b])
            classes.append(out["cls"].numpy().reshape(-1)[idx == b])
    return _stats(images, boxes, classes)


def _stats(images: list[np.ndarray], boxes: list[np.ndarray], classes: list[np.ndarray]) -> dict[str, np.ndarray]:
    xywh = np.concatenate(boxes)
    pixels = np.stack(images).astype(np.float64)  # (N, 3, H, W)
    grey = np.ptp(pixels, axis=1) <= 1  # the border: grey 114 before HSV, still without colour after it
    return {
        "per_image": np.array([len(b) for b in boxes], dtype=np.float64),
        "side": np.sqrt(xywh[:, 2] * xywh[:, 3]),
        "x": xywh[:, 0],
        "y": xywh[:, 1],
        "aspect": np.log(xywh[:, 2] / xywh[:, 3]),
        "classes": np.bincount(np.concatenate(classes).astype(int), minlength=6) / len(xywh),
        "grey": grey.mean(axis=(1, 2)),
        "channel_mean": pixels.mean(axis=(0, 2, 3)),
        "channel_std": pixels.std(axis=(0, 2, 3)),
    }


@pytest.mark.parametrize("mosaic", [1.0, 0.0], ids=["mosaic", "mosaic-closed"])
def test_the_gpu_path_augments_as_ultralytics_does(mixed_data: Path, mosaic: float) -> None:
    ours, theirs = _gpu_path(mixed_data, mosaic), _ultralytics(mixed_data, mosaic)
    assert ours["per_image"].mean() == pytest.approx(theirs["per_image"].mean(), rel=0.12)
    for q in (25, 50, 75):
        assert np.percentile(ours["side"], q) == pytest.approx(np.percentile(theirs["side"], q), rel=0.12), q
    for key in ("x", "y"):
        assert ours[key].mean() == pytest.approx(theirs[key].mean(), abs=0.03), key
        assert ours[key].std() == pytest.approx(theirs[key].std(), rel=0.12), key
    assert ours["aspect"].std() == pytest.approx(theirs["aspect"].std(), rel=0.15)
    assert np.abs(ours["classes"] - theirs["classes"]).sum() / 2 < 0.08  # total variation between class mixes
    assert ours["grey"].mean() == pytest.approx(theirs["grey"].mean(), rel=0.3)  # heavy-tailed: most images none
    assert ours["channel_mean"] == pytest.approx(theirs["channel_mean"], abs=6)
    assert ours["channel_std"] == pytest.approx(theirs["channel_std"], rel=0.1)


@pytest.mark.parametrize("top", [0, 24], ids=["square", "letterboxed"])
def test_a_box_moves_with_its_pixels(top: int) -> None:
    """One white rectangle on black, through mosaic, scale, shear, rotation and flips: where the labels put its box
    is where its pixels end up (within a pixel: resampling softens the rotated corners; no shift on average). The
    letterboxed case: wide images, their content `top` rows below the loader's grey padding."""
    s = 128
    hyp = Hyper(
        imgsz=s, degrees=10, shear=5, translate=0.1, scale=0.3, fliplr=0.5, flipud=0.5, hsv_h=0, hsv_s=0, hsv_v=0
    )
    h = s - 2 * top
    images = torch.full((4, 3, s, s), 114, dtype=torch.uint8)
    images[:, :, top : top + h] = 0
    images[0, :, top + 20 : top + 52, 50:90] = 255  # only image 0 has the object: the other tiles are blank
    sizes = np.array([[h, s]] * 4)
    pads = np.array([[0.0, top]] * 4)
    rng = np.random.default_rng(7)
    checked = 0
    offsets: list[np.ndarray] = []
    for _ in range(80):
        d = draw(hyp, sizes, rng)
        t = tiles(d, sizes, s)
        moved = move_boxes(d, t, Boxes(np.array([0]), np.array([1.0]), np.array([[50.0, 20, 90, 52]])), s)
        out = warp_images(images, on_device(d, t, pads, sizes, torch.device("cpu")), s)
        for b in range(4):
            white = np.argwhere(out[b, 0].numpy() > 127)
            rows = moved.xyxy[moved.batch_idx == b]
            if len(white) == 0:
                assert len(rows) == 0
            inside = len(rows) == 1 and rows[0, 0] > 1 and rows[0, 1] > 1 and rows[0, 2] < s - 1 and rows[0, 3] < s - 1
            if not inside or (d.sources[b] == 0).sum() > 1:  # a box cut by the border keeps its corners' extent
                continue
            x0, y0, x1, y1 = rows[0]
            found = (white[:, 1].min(), white[:, 0].min(), white[:, 1].max() + 1, white[:, 0].max() + 1)
            assert found == pytest.approx((x0, y0, x1, y1), abs=1.0)  # resampling softens a rotated corner
            offsets.append(np.subtract(found, (x0, y0, x1, y1)))
            checked += 1
    assert checked >= 10
    assert np.abs(np.mean(offsets, axis=0)).max() < 0.25  # and on average nothing is shifted (a flip was, by 1 px)


@pytest.mark.parametrize("direction", ["horizontal", "vertical"])
def test_a_flip_puts_pixels_and_boxes_where_ultralytics_does(direction: str) -> None:
    """A flip with nothing else: the pixels exactly as Ultralytics' RandomFlip moves them (np.fliplr: the pixel at x
    to s - 1 - x) and the box where it moves the box (its edge at x to s - x), so box and object stay aligned. The
    first version moved the pixels one further (s - x) and the boxes not: off by a pixel in half the images."""
    from ultralytics.data.augment import RandomFlip
    from ultralytics.utils.instance import Instances

    s = 32
    image = np.zeros((s, s, 3), np.uint8)
    image[8:20, 5:11] = 255  # columns 5-10, rows 8-19: the box [5, 8, 11, 20]
    box = np.array([[5.0, 8, 11, 20]])
    theirs = RandomFlip(p=1.0, direction=direction)(
        {"img": image.copy(), "instances": Instances(box.copy(), bbox_format="xyxy", normalized=False), "cls": [[0]]}
    )
    theirs["instances"].convert_bbox("xyxy")
    lr = direction == "horizontal"
    hyp = Hyper(
        imgsz=s, mosaic=0, translate=0, scale=0, fliplr=float(lr), flipud=float(not lr), hsv_h=0, hsv_s=0, hsv_v=0
    )
    sizes = np.array([[s, s]])
    d = draw(hyp, sizes, np.random.default_rng(0))
    t = tiles(d, sizes, s)
    moved = move_boxes(d, t, Boxes(np.array([0]), np.array([0.0]), box), s)
    ours = warp_images(
        torch.from_numpy(image).permute(2, 0, 1)[None], on_device(d, t, np.zeros((1, 2)), sizes, torch.device("cpu")), s
    )
    assert np.array_equal(ours[0].round().byte().permute(1, 2, 0).numpy(), theirs["img"])
    assert moved.xyxy == pytest.approx(theirs["instances"].bboxes)


def test_images_kept_on_the_device_augment_as_the_loaders_own(mixed_data: Path) -> None:
    """The RAM-cached images copied to the device once (the loader then sends labels only): the same batch through
    the same draws gives the same pixels and boxes as the loader's letterboxed images, squeezed ones included."""
    from yolo_workloads.train import device_images

    cfg, ds = _dataset(mixed_data, 1.0, cache="ram")
    _letterbox_only(ds, cfg)
    assert device_images.why_not(ds, IMGSZ, free_bytes=2**40) is None
    kept = device_images.upload(ds, IMGSZ, torch.device("cpu"))
    picks = [5, 0, 7, 2, 9, 11, 4, 1, 3, 6]  # the odd ones are 160 x 96, letterboxed
    sent = ds.collate_fn([ds[i] for i in picks])
    ds.transforms.append(device_images.DropPixels())
    labels_only = ds.collate_fn([ds[i] for i in picks])
    assert labels_only["img"].numel() == 0 and torch.equal(labels_only["bboxes"], sent["bboxes"])
    cpu = torch.device("cpu")
    hyp = Hyper.from_args(cfg)
    unmoved = sent["img"].float()
    a = GpuAugment(hyp, seed=1)(sent, cpu)
    b = GpuAugment(hyp, seed=1, images=kept)(labels_only, cpu)
    assert torch.equal(a["batch_idx"], b["batch_idx"]) and torch.equal(a["bboxes"], b["bboxes"])
    torch.testing.assert_close(b["img"], a["img"], atol=0.01, rtol=0)  # 0-255: float rounding of the offsets
    assert (a["img"] - unmoved).abs().mean() > 10  # the draws moved the pixels: the comparison is not trivial


def test_images_stay_with_the_loader_where_the_device_cannot_keep_them(mixed_data: Path) -> None:
    from yolo_workloads.train import device_images

    cfg, ds = _dataset(mixed_data, 1.0)
    assert "cache is not ram" in str(device_images.why_not(_letterbox_only(ds, cfg), IMGSZ, free_bytes=2**40))
    cfg, ds = _dataset(mixed_data, 1.0, cache="ram")
    too_small = 48 * 3 * IMGSZ * IMGSZ  # all of free memory, more than the share the images may take
    assert "of the GPU's free memory" in str(device_images.why_not(ds, IMGSZ, free_bytes=too_small))


def test_a_job_asking_what_the_gpu_path_lacks_is_refused_by_name() -> None:
    base = {"model": {"architecture": "yolov8n.yaml"}, "data": {"yaml": "/d.yaml"}, "output_dir": "/o"}
    TrainConfig.model_validate({**base, "augmentation": "gpu"})
    with pytest.raises(ValueError, match=r"mixup: 0\.2"):
        TrainConfig.model_validate({**base, "augmentation": "gpu", "extra_args": {"mixup": 0.2}})
    with pytest.raises(ValueError, match="supports task detect, not segment"):
        TrainConfig.model_validate({**base, "augmentation": "gpu", "task": "segment"})
    with pytest.raises(ValueError, match="rect: true"):
        TrainConfig.model_validate({**base, "augmentation": "gpu", "extra_args": {"rect": True}})
    TrainConfig.model_validate({**base, "augmentation": "gpu", "extra_args": {"rect": False}})
    TrainConfig.model_validate({**base, "augmentation": "cpu", "extra_args": {"mixup": 0.2, "rect": True}})


def test_a_training_with_gpu_augmentation_finishes(tmp_path: Path, shapes_data: Path) -> None:
    """Through `yolo-workload train` (here on the CPU: the same torch code), mosaic closing in its last epoch."""
    import json
    import subprocess
    import sys

    data = tmp_path / "data"
    shutil.copytree(shapes_data.parent, data)
    config = {
        "model": {"architecture": "yolov8n.yaml"},
        "data": {"yaml": str(data / "data.yaml")},
        "imgsz": 64, "epochs": 2, "batch": 8, "workers": 0, "gpus": 0, "augmentation": "gpu",
        "output_dir": str(tmp_path / "run"), "metrics_port": None, "termination_log": str(tmp_path / "term"),
        "extra_args": {"close_mosaic": 1, "plots": False},
    }  # fmt: skip
    (tmp_path / "c.json").write_text(json.dumps(config))
    done = subprocess.run(
        [sys.executable, "-m", "yolo_workloads.cli", "train", "--config", str(tmp_path / "c.json")],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "mosaic closed" in done.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs_completed"] == 2
    assert (tmp_path / "run" / "weights" / "best.pt").is_file()
