"""The serving pipeline's detections match Ultralytics `predict` on the same images (CPU, fp32).

The weights are random but image-dependent (synthetic.make_signal_weights), so every image yields dozens of
detections with distinct scores: the comparison covers letterbox geometry, normalisation, NMS and the mapping
back to original pixels, not an empty list. predict runs with rect=False, the LetterBox(auto=False) geometry
the server uses for fixed-shape batches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from serve_fixtures import images

pytestmark = pytest.mark.workloads

IMGSZ = 96


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> str:
    from yolo_workloads.serve.synthetic import make_signal_weights

    return make_signal_weights(str(tmp_path_factory.mktemp("w") / "signal.pt"), seed=1)


def _predict(weights: str, imgs: list[np.ndarray], conf: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    from ultralytics import YOLO

    yolo = YOLO(weights, task="detect")
    bgr = [np.ascontiguousarray(im[..., ::-1]) for im in imgs]  # predict takes OpenCV-style BGR arrays
    res = yolo.predict(bgr, imgsz=IMGSZ, conf=conf, rect=False, device="cpu", verbose=False, save=False)
    return [(r.boxes.xyxy.numpy(), r.boxes.conf.numpy(), r.boxes.cls.numpy().astype(int)) for r in res]


@pytest.mark.parametrize("fmt", ["png", "tensor"])
def test_detections_match_ultralytics_predict(weights: str, fmt: str) -> None:
    import torch
    from yolo_workloads.contract import ModelSource, ServeConfig
    from yolo_workloads.serve import synthetic
    from yolo_workloads.serve.pipeline import Detector, EncodedImage

    conf = 0.5
    # Exact fit, padding only (no resize), downscale, upscale: every letterbox branch.
    imgs = images(4, seed=3, sizes=[(96, 96), (72, 96), (150, 200), (40, 64)])
    cfg = ServeConfig(model=ModelSource(weights=weights), imgsz=IMGSZ, half=False, conf=conf, device="cpu")
    det = Detector(cfg)
    if fmt == "png":  # lossless, so both sides see identical pixels
        items: list[object] = [EncodedImage(synthetic.encode(im, "png"), "png") for im in imgs]
    else:
        items = [torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1))) for im in imgs]
    ours = det.run(items)  # type: ignore[arg-type]
    ref = _predict(weights, imgs, conf)

    total = 0
    for i, (mine, (boxes, scores, classes)) in enumerate(zip(ours, ref, strict=True)):
        assert not isinstance(mine, Exception), mine
        assert len(scores) >= 5, f"image {i}: reference has too few detections for a meaningful check"
        # The resize may round a pixel differently from OpenCV: allow a detection at the conf edge to differ.
        assert abs(len(mine.scores) - len(scores)) <= max(1, len(scores) // 50), (i, len(mine.scores), len(scores))
        # Pair each detection with a reference one (same class, box within 0.5 px, score within 2e-3): ranks of
        # near-equal scores may swap when a resize rounds differently from OpenCV, so order is not compared.
        ref_rows = np.concatenate([boxes, scores[:, None], classes[:, None]], 1)
        unmatched = 0
        for box, score, cls in zip(mine.boxes, mine.scores, mine.classes, strict=True):
            near = (
                (np.abs(ref_rows[:, :4] - box).max(1) <= 0.5)
                & (np.abs(ref_rows[:, 4] - score) <= 2e-3)
                & (ref_rows[:, 5] == cls)
            )
            unmatched += int(not near.any())
        assert unmatched <= max(1, len(scores) // 50), f"image {i}: {unmatched} of {len(mine.scores)} unmatched"
        # Where pixels are identical (no resize), the order is identical too.
        if imgs[i].shape[:2] in ((96, 96), (72, 96)):
            np.testing.assert_allclose(mine.boxes, boxes, atol=1e-3, err_msg=f"image {i} boxes")
            np.testing.assert_array_equal(mine.classes, classes, err_msg=f"image {i} classes")
        assert (mine.boxes[:, [0, 2]] <= imgs[i].shape[1]).all() and (mine.boxes[:, [1, 3]] <= imgs[i].shape[0]).all()
        total += len(scores)
    assert total >= 40


def test_bad_image_in_a_batch_fails_alone(weights: str) -> None:
    from yolo_workloads.contract import ModelSource, ServeConfig
    from yolo_workloads.serve import synthetic
    from yolo_workloads.serve.imagecheck import ImageError
    from yolo_workloads.serve.pipeline import Detections, Detector, EncodedImage

    det = Detector(ServeConfig(model=ModelSource(weights=weights), imgsz=64, half=False, conf=0.5, device="cpu"))
    good = synthetic.encode(images(1, seed=5)[0])
    # Valid JPEG header and end marker, garbage entropy data: only the decoder can tell.
    corrupt = good[:400] + bytes(range(256)) * 8 + b"\xff\xd9"
    out = det.run([EncodedImage(good, "jpeg"), EncodedImage(corrupt, "jpeg"), EncodedImage(good, "jpeg")])
    assert isinstance(out[0], Detections) and isinstance(out[2], Detections)
    np.testing.assert_array_equal(out[0].boxes, out[2].boxes)
    assert isinstance(out[1], (ImageError, Detections))  # libjpeg may recover garbage as grey; never a crash


def test_inspect_image_reports_size_and_problems() -> None:
    from yolo_workloads.serve import synthetic
    from yolo_workloads.serve.imagecheck import ImageError, inspect_image

    im = images(1, seed=2, sizes=[(30, 50)])[0]
    jpeg, png = synthetic.encode(im), synthetic.encode(im, "png")
    assert (inspect_image(jpeg, 10**6).width, inspect_image(jpeg, 10**6).height) == (50, 30)
    assert inspect_image(png, 10**6).format == "png"
    cases = {
        b"": (400, "empty"),
        b"hello": (415, "not an image"),
        jpeg[:200]: (400, "truncated"),
        png[:100]: (400, "truncated"),
    }
    for data, (status, words) in cases.items():
        with pytest.raises(ImageError, match=words) as err:
            inspect_image(data, 10**6)
        assert err.value.status == status
    with pytest.raises(ImageError, match="over the limit") as err:
        inspect_image(jpeg, 1000)
    assert err.value.status == 413


def test_config_errors_name_the_file(tmp_path: Path) -> None:
    from yolo_workloads.serve.cli import load_config

    bad = tmp_path / "serve.yaml"
    bad.write_text("model: {architecture: yolov8n.yaml}\nmax_batch_size: 0\n")
    with pytest.raises(SystemExit, match=r"serve.yaml[\s\S]*max_batch_size"):
        load_config(bad, {})
    with pytest.raises(SystemExit, match="cannot read config"):
        load_config(tmp_path / "missing.yaml", {})
    good = tmp_path / "ok.json"
    good.write_text('{"model": {"architecture": "yolov8n.yaml"}, "imgsz": 64, "port": 8123}')
    assert load_config(good, {"port": 9999}).port == 9999
    unset = load_config(good, {"architecture": None, "weights": None, "port": None})  # flags not given
    assert (unset.model.architecture, unset.port, unset.imgsz) == ("yolov8n.yaml", 8123, 64)
    with pytest.raises(SystemExit, match=r"invalid config in arguments[\s\S]*workers"):
        load_config(None, {"architecture": "yolov8n.yaml", "workers": 0})
    for field, value in (("conf", 1.5), ("iou", -0.1), ("port", 70000)):  # answers nothing, or cannot listen
        bad.write_text(f"model: {{architecture: yolov8n.yaml}}\n{field}: {value}\n")
        with pytest.raises(SystemExit, match=rf"serve.yaml[\s\S]*{field}"):
            load_config(bad, {})


def _reference_nms(pred, conf: float, iou: float, max_det: int):  # type: ignore[no-untyped-def]
    """Ultralytics' per-image NMS (best class, conf filter, class offsets, torchvision.ops.nms, max_det) in float64."""
    import torch
    import torchvision

    rows, idx = [], []
    for b, pb in enumerate(pred.double()):
        p = pb.T  # [A, 4+nc]
        score, cls = p[:, 4:].max(1)
        sel = score > conf
        xywh, score, cls = p[sel, :4], score[sel], cls[sel]
        xyxy = torch.cat((xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2), 1)
        keep = torchvision.ops.nms(xyxy + cls[:, None] * 10_000.0, score, iou)[:max_det]
        rows.append(torch.cat((xyxy[keep], score[keep, None], cls[keep, None].double()), 1))
        idx.append(torch.full((len(keep),), b))
    return torch.cat(rows).float(), torch.cat(idx)


@pytest.mark.parametrize(
    ("block_group", "block_pairs", "max_det"),
    [(1024, 1 << 24, 300), (1024, 40 * 40, 300), (30, 1 << 24, 300), (1024, 1 << 24, 7)],
)
def test_nms_equals_greedy_reference(
    weights: str, monkeypatch: pytest.MonkeyPatch, block_group: int, block_pairs: int, max_det: int
) -> None:
    """Dense clusters of overlapping boxes (long suppression chains), several classes, an image without candidates,
    groups in one block call, in many calls (`block_pairs` small), groups too wide for a block (`block_group` small:
    tiles) and a max_det cut: the batched NMS equals greedy NMS image by image."""
    import torch
    from yolo_workloads.contract import ModelSource, ServeConfig
    from yolo_workloads.serve import nms, pipeline

    det = pipeline.Detector(ServeConfig(model=ModelSource(weights=weights), imgsz=64, half=False, conf=0.3))
    det.max_det = max_det
    monkeypatch.setattr(nms, "BLOCK_GROUP", block_group)
    monkeypatch.setattr(nms, "BLOCK_PAIRS", block_pairs)
    g = torch.Generator().manual_seed(0)
    b, nc, a = 5, 3, 400
    centres = torch.rand(b, 2, 6, generator=g) * 500 + 50  # six clusters per image
    pick = torch.randint(0, 6, (b, 1, a), generator=g).expand(-1, 2, -1)
    xy = centres.gather(2, pick) + torch.randn(b, 2, a, generator=g) * 6
    wh = 40 + torch.rand(b, 2, a, generator=g) * 30
    cls = torch.rand(b, nc, a, generator=g) * 0.6
    cls[3] = 0.1  # image 3: no candidate above conf
    pred = torch.cat((xy, wh, cls), 1)
    with torch.inference_mode():
        rows, kb = det.nms(pred)
    ref_rows, ref_kb = _reference_nms(pred, 0.3, det.iou, max_det)
    assert (ref_kb == 3).sum() == 0 and len(ref_kb) > 4 * min(max_det, 6)
    if max_det == 7:
        assert torch.bincount(ref_kb).max() == 7
    torch.testing.assert_close(kb, ref_kb)
    torch.testing.assert_close(rows, ref_rows)


def test_anchor_grid_is_computed_once_for_every_batch_size(weights: str) -> None:
    """Two device threads on two CUDA streams must never see the head replace its anchors (batch sizes vary)."""
    import torch
    from yolo_workloads.contract import ModelSource, ServeConfig
    from yolo_workloads.serve import pipeline

    det = pipeline.Detector(ServeConfig(model=ModelSource(weights=weights), imgsz=64, half=False, device="cpu"))
    head = det.model.model[-1]
    anchors = head.anchors
    with torch.inference_mode():
        one = det.forward(torch.rand(1, 3, 64, 64))
        three = det.forward(torch.rand(3, 3, 64, 64))
    assert head.anchors is anchors
    assert one.shape[0] == 1 and three.shape[0] == 3
