"""The per-task steps of serve/tasks.py, one by one, against Ultralytics' own functions on random tensors."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.workloads


def _masks(k: int, h: int, w: int, seed: int):  # type: ignore[no-untyped-def]
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.rand(k, h, w, generator=g) > 0.6


def _whole(m):  # type: ignore[no-untyped-def]
    """Whole masks [K, h, w] as the encoder's strips: as wide as the image, from its first column."""
    import torch
    from yolo_workloads.serve import masks

    return masks.Part(m, torch.zeros(m.shape[0], dtype=torch.long), m.shape[2])


def test_rle_round_trip_and_coco_conventions() -> None:
    import torch
    from yolo_workloads.serve import masks, tasks

    m = _masks(5, 7, 9, 0)
    m[1] = False  # empty
    m[2] = True  # full
    m[3, 0, 0] = True  # starts with a 1: counts begin with 0
    other = _masks(3, 4, 6, 1)  # a second image of another size, encoded in the same call
    none = torch.zeros(0, 5, 5, dtype=torch.bool)  # an image without detections
    counts = [c for part in masks.encode([_whole(m), _whole(none), _whole(other)]) for c in part]
    assert len(counts) == 8
    assert counts[1].tolist() == [63] and counts[2].tolist() == [0, 63] and counts[3][0] == 0
    for j, (mask, (h, w)) in enumerate([*((x, (7, 9)) for x in m), *((x, (4, 6)) for x in other)]):
        assert counts[j].sum() == h * w
        assert (counts[j][1:] > 0).all(), "runs after the first are never empty"
        np.testing.assert_array_equal(tasks.rle_decode(counts[j], h, w), mask.numpy().astype(np.uint8))
    assert masks.encode([_whole(none)]) == [[]] and masks.encode([]) == []
    # column-major: a mask with only its second column set starts with one column (7 pixels) of zeros
    col = torch.zeros(1, 7, 9, dtype=torch.bool)
    col[0, :, 1] = True
    assert masks.encode([_whole(col)])[0][0].tolist() == [7, 7, 49]


def test_letterbox_masks_and_mapping_equal_ultralytics(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from ultralytics.utils import ops
    from yolo_workloads.serve import tasks

    g = torch.Generator().manual_seed(1)
    protos = torch.randn(32, 16, 16, generator=g)
    coeffs = torch.randn(6, 32, generator=g)
    xy = torch.rand(6, 2, generator=g) * 40
    boxes = torch.cat((xy, xy + 5 + torch.rand(6, 2, generator=g) * 30), 1)
    monkeypatch.setattr(tasks, "MASK_CHUNK_PIXELS", 64 * 64 * 2)  # three chunks of two
    ours = tasks.letterbox_masks(protos, coeffs, boxes, 64)
    ref = ops.process_mask(protos, coeffs, boxes, (64, 64), upsample=True).bool()
    assert torch.equal(ours, ref) and ours.any()
    # a 30 x 50 image letterboxed into 64: content 38 x 64 at top 13
    h0, w0 = 30, 50
    nh, nw, top, left = 38, 64, 13, 0
    mapped = tasks.masks_to_image(ours, top, left, nh, nw, h0, w0)
    ref_img = ops.scale_masks(ref[None].float(), (h0, w0))[0] > 0.5
    assert torch.equal(mapped, ref_img)


def test_greedy_nms_equals_torchvision_per_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """Long suppression chains (each box overlaps the next: greedy keeps every other one, which takes the fixed
    point as many rounds as the chain is long), dense clusters, groups that are not consecutive ids, groups in one
    block call, in several, and too wide for a block (tiles, the chain across tiles): the kept boxes are
    torchvision's greedy NMS per group."""
    import torch
    import torchvision
    from yolo_workloads.serve import nms

    g = torch.Generator().manual_seed(5)
    n = 400
    centres = torch.rand(6, 2, generator=g) * 300
    xy = centres[torch.randint(0, 6, (n,), generator=g)] + torch.randn(n, 2, generator=g) * 8
    wh = 20 + torch.rand(n, 2, generator=g) * 30
    boxes = torch.cat((xy - wh / 2, xy + wh / 2), 1)
    scores = torch.rand(n, generator=g)
    groups = torch.randint(0, 5, (n,), generator=g) * 3  # ids 0, 3, 6, 9, 12
    chain = torch.arange(40, dtype=torch.float32)[:, None] * torch.tensor([6.0, 0, 6, 0]) + torch.tensor(
        [0.0, 0, 10, 10]
    )  # 10 x 10 boxes 6 px apart: IoU 0.25 with the next at 0.2, none with the one after
    boxes = torch.cat((boxes, chain + 1000))
    scores = torch.cat((scores, torch.linspace(1, 0.5, 40)))
    groups = torch.cat((groups, torch.full((40,), 99)))
    for block_group, block_pairs in ((1024, 1 << 24), (1024, 45 * 45), (90, 1 << 24), (7, 1 << 24)):
        monkeypatch.setattr(nms, "BLOCK_GROUP", block_group)
        monkeypatch.setattr(nms, "BLOCK_PAIRS", block_pairs)
        keep = nms.greedy_nms(boxes, scores, groups, 0.2)
        ref = torchvision.ops.batched_nms(boxes.double(), scores.double(), groups, 0.2)
        assert sorted(keep.tolist()) == sorted(ref.tolist()), (block_group, block_pairs)
        assert (scores[keep].diff() <= 0).all(), "best first"
        assert keep[groups[keep] == 99].tolist() == list(range(n, n + 40, 2)), "every other box of the chain"
    assert nms.greedy_nms(boxes[:0], scores[:0], groups[:0], 0.5).numel() == 0
    # The GPU's tiles for a wide group, here on the CPU: the chain across tiles of 7, and a dense cluster.
    monkeypatch.setattr(nms, "BLOCK_GROUP", 7)
    for sel in (groups == 99, groups == 3):
        order = torch.argsort(scores[sel], descending=True)
        wide = boxes[sel][order]
        ref = torchvision.ops.nms(wide, scores[sel][order], 0.2)
        assert nms._tiled(wide, 0.2).nonzero()[:, 0].tolist() == sorted(ref.tolist())


def test_rotated_fast_nms_equals_ultralytics_per_group(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from ultralytics.utils.metrics import batch_probiou
    from ultralytics.utils.nms import TorchNMS
    from yolo_workloads.serve import nms, tasks

    g = torch.Generator().manual_seed(2)
    n = 300
    centres = torch.rand(5, 2, generator=g) * 200
    xy = centres[torch.randint(0, 5, (n,), generator=g)] + torch.randn(n, 2, generator=g) * 4
    boxes = torch.cat((xy, 10 + torch.rand(n, 2, generator=g) * 20, torch.rand(n, 1, generator=g) * 3 - 0.7), 1)
    scores = torch.rand(n, generator=g)
    groups = torch.randint(0, 4, (n,), generator=g)
    groups[groups == 3] = 7  # group ids need not be consecutive
    groups[:5] = 11  # a group of five
    torch.testing.assert_close(tasks.probiou(boxes[:20], boxes), batch_probiou(boxes[:20], boxes))
    monkeypatch.setattr(tasks, "PROBIOU_ROWS", 37)  # bands that do not divide n
    # Blocks only (every group small, one call), blocks of several calls, bands for the larger groups alone.
    for block_group, block_pairs in ((1024, 1 << 24), (1024, 80 * 80), (60, 1 << 24)):
        monkeypatch.setattr(nms, "BLOCK_GROUP", block_group)
        monkeypatch.setattr(nms, "BLOCK_PAIRS", block_pairs)
        keep = tasks.rotated_fast_nms(boxes, scores, groups, 0.5)
        for grp in groups.unique().tolist():
            idx = (groups == grp).nonzero()[:, 0]
            ref = idx[TorchNMS.fast_nms(boxes[idx], scores[idx], 0.5, iou_func=batch_probiou)]
            assert keep[groups[keep] == grp].tolist() == ref.tolist(), (block_group, block_pairs, grp)
        assert 0 < len(keep) < n
        assert (scores[keep].diff() <= 0).all(), "best first"
    assert tasks.rotated_fast_nms(boxes[:0], scores[:0], groups[:0], 0.5).numel() == 0


def test_keypoints_and_rotated_boxes_through_the_letterbox() -> None:
    import torch
    from ultralytics.utils import ops
    from yolo_workloads.serve import tasks

    rng = np.random.default_rng(3)
    h0, w0, s = 150, 200, 96  # gain 0.48, content 72 x 96 at top 12
    geom = np.array([[0, 12, 96 / 200, 72 / 150, w0, h0]] * 4, np.float32)
    kpts = rng.uniform(-5, 100, (4, 17, 3)).astype(np.float32)
    ref = ops.scale_coords((s, s), torch.from_numpy(kpts.copy()), (h0, w0)).numpy()
    np.testing.assert_allclose(tasks.keypoints_to_image(kpts, geom), ref, atol=1e-4)
    rb = rng.uniform(5, 90, (4, 5)).astype(np.float32)
    ref_rb = ops.scale_boxes((s, s), torch.from_numpy(rb[:, :4].copy()), (h0, w0), xywh=True).numpy()
    np.testing.assert_allclose(tasks.rboxes_to_image(rb, geom)[:, :4], ref_rb, atol=1e-4)
    corners = ops.xywhr2xyxyxyxy(rb)
    ref_xyxy = np.concatenate([corners.min(1), corners.max(1)], 1)
    np.testing.assert_allclose(tasks.enclosing_boxes(rb), ref_xyxy, atol=1e-3)


@pytest.mark.parametrize(("h", "w"), [(64, 64), (48, 64), (150, 200), (200, 150), (40, 30)])
def test_classify_resize_crop_matches_torchvision_on_pil(h: int, w: int) -> None:
    import torch
    import torchvision.transforms as T  # noqa: N812
    from PIL import Image
    from yolo_workloads.serve import tasks

    img = np.random.default_rng(h * w).integers(0, 255, (h, w, 3), dtype=np.uint8)
    ref = np.asarray(T.Compose([T.Resize(64), T.CenterCrop(64)])(Image.fromarray(img))).astype(np.int16)
    ours = tasks.resize_crop(torch.from_numpy(img.transpose(2, 0, 1).copy())[None], 64)[0]
    diff = np.abs(ours.numpy().transpose(1, 2, 0).astype(np.int16) - ref)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.1, (diff.max(), (diff > 0).mean())  # PIL: fixed-point weights


def test_polygons_trace_a_rectangle() -> None:
    import torch
    from yolo_workloads.serve import masks, tasks

    m = torch.zeros(1, 20, 30, dtype=torch.bool)
    m[0, 5:10, 8:20] = True
    counts = masks.encode([_whole(m)])[0][0]
    polys = tasks.mask_polygons(counts, 20, 30, np.array([8, 5, 20, 10], np.float32))
    assert len(polys) == 1
    xs, ys = polys[0][0::2], polys[0][1::2]
    assert (min(xs), min(ys), max(xs), max(ys)) == (8, 5, 19, 9)


def test_mask_logits_of_a_batch_equal_each_images_own_product(monkeypatch: pytest.MonkeyPatch) -> None:
    """One padded product per chunk of images gives each detection its own image's `coeffs @ prototypes`, images
    without detections and chunk edges included."""
    import torch
    from yolo_workloads.serve import tasks

    g = torch.Generator().manual_seed(5)
    protos = torch.randn(5, 8, 6, 7, generator=g)
    counts = [3, 0, 1, 4, 2]
    image = torch.repeat_interleave(torch.arange(5), torch.tensor(counts))
    coeffs = torch.randn(len(image), 8, generator=g)
    expected = torch.stack([coeffs[i] @ protos[image[i]].reshape(8, -1) for i in range(len(image))]).reshape(-1, 6, 7)
    for chunk in (1 << 20, 4 * 6 * 7 * 2):  # every image at once; two images a chunk
        monkeypatch.setattr(tasks, "LOGIT_CHUNK", chunk)
        torch.testing.assert_close(tasks.mask_logits(protos, coeffs, image, counts), expected)
    assert tasks.mask_logits(protos, coeffs[:0], image[:0], [0] * 5).shape == (0, 6, 7)


@pytest.mark.parametrize("extra", ["none", "obb", "keypoints", "mask"])
def test_every_answer_row_is_the_contracts_detect_answer(extra: str) -> None:
    """What the server writes is what the contract describes and the local runner reads: no key outside it."""
    from pydantic import TypeAdapter
    from yolo_workloads.contract import ClassificationAnswer, DetectAnswer, DetectionAnswer
    from yolo_workloads.serve import answers
    from yolo_workloads.serve.pipeline import Classification, Detections

    boxes = np.array([[1, 2, 30, 40], [5, 5, 9, 9]], dtype=np.float32)
    out = Detections(boxes, np.array([0.9, 0.5], dtype=np.float32), np.array([0, 1], dtype=np.int32), size=(48, 64))
    if extra == "obb":
        out.obb = np.array([[15, 21, 29, 38, 0.1], [7, 7, 4, 4, 0.0]], dtype=np.float32)
    elif extra == "keypoints":
        out.keypoints = np.ones((2, 3, 3), dtype=np.float32)
    elif extra == "mask":
        out.masks = [np.array([10, 5, 3057], dtype=np.int64), np.array([3072], dtype=np.int64)]
    answer = answers.image_answer(out, {0: "circle"}, "rle")
    doc = TypeAdapter(DetectAnswer).validate_python({"model": "yolo", "images": [answer]})
    rows = doc["images"][0]["detections"]
    assert [r["class_name"] for r in rows] == ["circle", "1"] and rows[0]["box"] == [1, 2, 30, 40]
    assert all(set(row) <= set(DetectionAnswer.__annotations__) for row in answer["detections"])
    if extra != "none":
        assert all(extra in row for row in rows)

    top = answers.image_answer(Classification(np.array([2]), np.array([0.75])), {}, "rle")
    assert [set(row) for row in top["classifications"]] == [set(ClassificationAnswer.__annotations__)]


def test_answers_round_each_number_as_python_does() -> None:
    """The vectorised answer writes exactly the numbers the element-by-element `round(float(v), n)` wrote."""
    from yolo_workloads.serve import answers
    from yolo_workloads.serve.pipeline import Classification, Detections

    rng = np.random.default_rng(7)
    k = 500
    out = Detections(
        (rng.random((k, 4), dtype=np.float32) * 1920).astype(np.float32),
        rng.random(k, dtype=np.float32),
        rng.integers(0, 90, k).astype(np.int32),
        keypoints=(rng.random((k, 17, 3), dtype=np.float32) * [640, 480, 1]).astype(np.float32),
        obb=(rng.random((k, 5), dtype=np.float32) * [640, 480, 300, 200, 3.14]).astype(np.float32),
        size=(480, 640),
    )
    names = {i: f"class {i}" for i in range(80)}  # ids 80-89 have no name: answered as the id
    rows = answers.image_answer(out, names, "rle")["detections"]
    for j, row in enumerate(rows):
        assert row["box"] == [round(float(v), 2) for v in out.boxes[j]]
        assert row["score"] == round(float(out.scores[j]), 4)
        assert row["class_name"] == names.get(int(out.classes[j]), str(int(out.classes[j])))
        assert row["obb"] == [round(float(v), 2) for v in out.obb[j, :4]] + [round(float(out.obb[j, 4]), 4)]
        want = [[round(float(v), 2 if i < 2 else 4) for i, v in enumerate(p)] for p in out.keypoints[j]]
        assert row["keypoints"] == want
        assert all(type(v) is float for v in row["box"])  # JSON numbers, not numpy scalars
    top = answers.image_answer(
        Classification(np.array([3, 1], np.int32), np.array([0.123456, 0.5], np.float32)), {}, "rle"
    )
    assert top["classifications"] == [
        {"class_id": 3, "class_name": "3", "score": round(float(np.float32(0.123456)), 4)},
        {"class_id": 1, "class_name": "1", "score": 0.5},
    ]
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))
    assert answers.image_answer(empty, names, "rle") == {"detections": []}


def _boxes(n: int, size: int, seed: int):  # type: ignore[no-untyped-def]
    """Boxes (xyxy, letterbox pixels) of every width, fractional, some on or past the letterbox's edges."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, generator=g) * (size + 8) - 6
    w = torch.rand(n, generator=g) ** 2 * size * 1.2 + 0.3
    y = torch.rand(n, generator=g) * size * 0.8
    h = torch.rand(n, generator=g) * size * 0.6 + 0.5
    boxes = torch.stack((x, y, x + w, y + h), 1)
    boxes[0] = torch.tensor([0.0, 0.0, size, size])  # the whole letterbox
    boxes[1] = torch.tensor([size - 2.5, 3.0, size + 4.0, 20.0])  # at the right edge
    return boxes


@pytest.mark.parametrize(("size", "proto"), [(64, 16), (128, 16), (48, 16)])
def test_mask_strips_equal_whole_letterbox_masks(size: int, proto: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Strips of each box's columns hold exactly the whole letterbox masks' values (power-of-two prototype ratios;
    48 / 16 falls back to whole masks), whatever the chunking."""
    import torch
    from yolo_workloads.serve import masks, tasks

    g = torch.Generator().manual_seed(size)
    logits = torch.randn(40, proto, proto, generator=g) * 3
    boxes = _boxes(40, size, size)
    whole = tasks.upsample_masks(logits, boxes, size)
    monkeypatch.setattr(tasks, "MASK_CHUNK_PIXELS", size * size * 3)  # several chunks of several widths
    strips = masks.mask_strips(logits, boxes, size)
    assert sorted(i for s in strips for i in s.index.tolist()) == list(range(40))
    assert len(strips) > 1 or size % proto or size // proto == 3
    for s in strips:
        assert torch.equal(masks.paste(s.masks, s.x0, size), whole[torch.from_numpy(s.index)])
        assert s.masks.shape[2] <= size
    assert whole.any()


def test_strips_encode_as_the_whole_masks_they_come_from() -> None:
    """A strip's RLE is its whole mask's, with strips reaching past either side of the image (those columns count
    as 0), masks starting or ending with a 1, full columns and empty strips."""
    import torch
    from yolo_workloads.serve import masks

    h, w, width = 9, 5, 12
    g = torch.Generator().manual_seed(7)
    col0 = torch.tensor([-3, 0, 4, 7, 10, 2, -1])
    strips = torch.rand(len(col0), h, w, generator=g) > 0.5
    strips[5] = False
    strips[6, :, :] = True  # whole columns: -1 (outside) to 3
    whole = torch.zeros(len(col0), h, width, dtype=torch.bool)
    for k, c in enumerate(col0.tolist()):
        for j in range(w):
            if 0 <= c + j < width:
                whole[k, :, c + j] = strips[k, :, j]
    whole[1, 0, 0] = strips[1, 0, 0] = True  # the image's first pixel
    whole[4, h - 1, width - 1] = strips[4, h - 1, 1] = True  # its last
    got = masks.encode([masks.Part(strips, col0, width), _whole(whole)])
    for a, b, m in zip(got[0], got[1], whole, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.sum() == h * width
        np.testing.assert_array_equal(masks.tasks.rle_decode(a, h, width), m.numpy().astype(np.uint8))


def test_group_masks_equal_whole_masks_mapped_to_each_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """The detections' RLEs over their images (a crop of the letterbox or a resize) and which masks are empty, as
    whole letterbox masks mapped by `masks_to_image` give them."""
    import torch
    from yolo_workloads.serve import masks, tasks

    size = 64

    def geometry(h0: int, w0: int) -> tuple[int, int, int, int]:
        r = min(size / h0, size / w0)
        nh, nw = round(h0 * r), round(w0 * r)
        return nh, nw, (size - nh) // 2, (size - nw) // 2

    g = torch.Generator().manual_seed(3)
    logits = torch.randn(30, 16, 16, generator=g) * 3
    boxes = _boxes(30, size, 5)
    boxes[2] = torch.tensor([40.2, 40.2, 40.8, 40.8])  # too small for any pixel: an empty mask
    sizes = [[(48, 64), (64, 32), (30, 50), (64, 64)][k % 4] for k in range(30)]
    monkeypatch.setattr(tasks, "MASK_CHUNK_PIXELS", size * size * 4)
    keep, rles = masks.group_masks(masks.mask_strips(logits, boxes, size), sizes, size, geometry)
    whole = tasks.upsample_masks(logits, boxes, size)
    assert keep.tolist() == whole.flatten(1).any(1).tolist() and not keep[2] and keep.sum() > 10
    for k, (h0, w0) in enumerate(sizes):
        nh, nw, top, left = geometry(h0, w0)
        ref = tasks.masks_to_image(whole[k : k + 1], top, left, nh, nw, h0, w0)[0]
        np.testing.assert_array_equal(tasks.rle_decode(rles[k], h0, w0), ref.numpy().astype(np.uint8))
