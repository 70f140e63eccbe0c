"""Each task's post-processing after NMS: masks, keypoints, rotated boxes, top-k classes.

Pure functions of tensors (device side) and arrays (host side), so each can be checked alone. They follow the
geometry of Ultralytics 8.4's predictors, which the parity tests compare against (tests/workloads/
test_serve_tasks_parity.py):

- segment: mask logits are `coefficients @ prototypes`, upsampled bilinearly to the letterbox size, kept where
  > 0 and inside the letterbox box (`ops.process_mask(upsample=True)`, the default `retina_masks=False` path); a
  detection whose mask is empty is dropped, as `SegmentationPredictor` does. The letterbox mask is then mapped to
  the input image as Ultralytics' plotting maps it (`ops.scale_masks`: padding cut away, bilinear resize, > 0.5)
  and sent as COCO run-length encoding, computed on the device so only the run boundaries cross to the host
  (masks.py makes them only within each box's columns).
- pose: keypoints (x, y[, visibility]) through the letterbox inverse and clipped to the image (`scale_coords`).
- obb: rotated NMS is Ultralytics' Fast-NMS (a box is dropped when any higher-scored box of its image and class
  overlaps it above `iou` by probabilistic IoU, suppressed boxes included); boxes stay (cx, cy, w, h, angle) as the
  head predicts them (angle in [-pi/4, 3pi/4), not canonicalised), centres and sides through the letterbox inverse.
- classify: Ultralytics resizes the short side to imgsz (PIL bilinear, antialiased) and centre-crops, no
  letterbox; the model's softmax is cut to the top k.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

from yolo_workloads.serve import nms

# Masks upsampled (float) at once: bounds the float working set (pixels x 4 bytes) of each resize.
MASK_CHUNK_PIXELS = 32 * 1024 * 1024
# Detections whose masks (letterbox and image-sized, bool) are made and run-length encoded together, one host sync
# per group: bounds their bytes on the device.
RLE_GROUP_PIXELS = 256 * 1024 * 1024
# Mask logits (at the prototypes' resolution, float) computed together: bounds the padded per-image products.
LOGIT_CHUNK = 32 * 1024 * 1024
# Rows of the probabilistic-IoU matrix computed at once in rotated NMS (rows x N floats).
PROBIOU_ROWS = 1024
TOP_K = 5


# -- segment -------------------------------------------------------------------------------------------------------
def mask_logits(protos: torch.Tensor, coeffs: torch.Tensor, image: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """Mask logits [K, mh, mw] (float32) of every detection of a batch: `coeffs @ prototypes` of its own image.

    `protos` [B, nm, mh, mw], `coeffs` [K, nm] with the detections sorted by `image` [K] and `counts` [B] of them
    per image. One batched product per chunk of images (each image's coefficients padded to the largest count)
    instead of one product per image: a batch of 64 images costs a few kernels, not hundreds."""
    b, nm, mh, mw = protos.shape
    k = coeffs.shape[0]
    out = torch.empty((k, mh, mw), dtype=torch.float32, device=protos.device)
    if k == 0:
        return out
    starts = [0]
    for n in counts:
        starts.append(starts[-1] + n)
    width = max(counts)
    pos = torch.arange(k, device=protos.device) - torch.as_tensor(starts[:-1], device=protos.device)[image]
    step = max(1, LOGIT_CHUNK // max(width * mh * mw, 1))
    for lo in range(0, b, step):
        hi = min(lo + step, b)
        d0, d1 = starts[lo], starts[hi]
        if d0 == d1:
            continue
        padded = torch.zeros((hi - lo, width, nm), dtype=torch.float32, device=protos.device)
        padded[image[d0:d1] - lo, pos[d0:d1]] = coeffs[d0:d1].float()
        products = torch.bmm(padded, protos[lo:hi].float().reshape(hi - lo, nm, mh * mw))
        out[d0:d1] = products[image[d0:d1] - lo, pos[d0:d1]].reshape(-1, mh, mw)
    return out


def upsample_masks(logits: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Binary masks [K, size, size] (bool) in letterbox pixels from logits [K, mh, mw]: upsampled bilinearly, kept
    where > 0 (sigmoid > 0.5 without the sigmoid) and inside the box (`boxes` [K, 4] xyxy, letterbox pixels), as
    `ops.process_mask(..., upsample=True)`; in chunks of detections to bound memory."""
    out = torch.zeros((logits.shape[0], size, size), dtype=torch.bool, device=logits.device)
    step = max(1, MASK_CHUNK_PIXELS // (size * size))
    cols = torch.arange(size, device=logits.device, dtype=torch.float32)
    for lo in range(0, logits.shape[0], step):
        up = F.interpolate(logits[None, lo : lo + step], (size, size), mode="bilinear", align_corners=False)[0]
        b = boxes[lo : lo + step].float()
        inside_x = (cols[None, :] >= b[:, 0:1]) & (cols[None, :] < b[:, 2:3])  # [k, size]
        inside_y = (cols[None, :] >= b[:, 1:2]) & (cols[None, :] < b[:, 3:4])
        out[lo : lo + step] = (up > 0) & inside_y[:, :, None] & inside_x[:, None, :]
    return out


def letterbox_masks(protos: torch.Tensor, coeffs: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """The masks of one image's detections: `protos` [nm, mh, mw], `coeffs` [K, nm], `boxes` [K, 4] (see
    `mask_logits` and `upsample_masks`)."""
    image = torch.zeros(coeffs.shape[0], dtype=torch.long, device=protos.device)
    return upsample_masks(mask_logits(protos[None], coeffs, image, [coeffs.shape[0]]), boxes, size)


def masks_to_image(masks: torch.Tensor, top: int, left: int, nh: int, nw: int, h0: int, w0: int) -> torch.Tensor:
    """Letterbox masks [K, S, S] to the input image [K, h0, w0] (bool): the letterbox's content cut out, resized
    bilinearly and kept > 0.5, as `ops.scale_masks` (Ultralytics' plotting of non-retina masks)."""
    if masks.shape[0] == 0:
        return torch.zeros((0, h0, w0), dtype=torch.bool, device=masks.device)
    if (nh, nw) == (h0, w0):
        return masks[:, top : top + nh, left : left + nw].clone()
    out = torch.empty((masks.shape[0], h0, w0), dtype=torch.bool, device=masks.device)
    step = max(1, MASK_CHUNK_PIXELS // max(h0 * w0, nh * nw))
    for lo in range(0, masks.shape[0], step):
        content = masks[None, lo : lo + step, top : top + nh, left : left + nw].float()
        up = F.interpolate(content, (h0, w0), mode="bilinear", align_corners=False)[0]
        out[lo : lo + step] = up > 0.5
    return out


def rle_counts(first: np.ndarray, changes: np.ndarray, areas: np.ndarray) -> list[np.ndarray]:
    """COCO uncompressed RLE counts of each mask (`areas` [K]: each mask's H*W) from the value of its first pixel and
    the sorted flat indices of the changes between consecutive pixels (column-major) over the concatenation of
    every mask's H*W - 1 pixel pairs (masks.encode computes them on the device):
    alternating runs of 0s and 1s, starting with 0s (a count of 0 first when the mask starts with a 1), summing
    to H*W. Vectorised over all masks: a batch's thousands of masks cost no Python loop but the final split."""
    k = len(areas)
    if k == 0:
        return []
    areas = areas.astype(np.int64)
    base = np.concatenate(([0], np.cumsum(areas - 1)))
    owner = np.searchsorted(base, changes, side="right") - 1  # the mask of each change
    n = np.bincount(owner, minlength=k)
    lead = first.astype(np.int64)  # an extra bound 0 makes the leading count of 0s zero
    size = n + 2 + lead  # bounds of mask m: 0, [0,] each change's pixel + 1, area
    start = np.cumsum(size) - size
    bounds = np.zeros(int(size.sum()), np.int64)
    rank = np.arange(len(changes)) - (np.cumsum(n) - n)[owner]
    bounds[start[owner] + 1 + lead[owner] + rank] = changes - base[owner] + 1
    bounds[start + size - 1] = areas
    counts = np.diff(bounds)
    keep = np.ones(len(counts), bool)
    keep[(start + size - 1)[:-1]] = False  # the step from one mask's last bound to the next mask's first
    return np.split(counts[keep].astype(np.int32), np.cumsum(size - 1)[:-1])


def rle_decode(counts: np.ndarray, h: int, w: int) -> np.ndarray:
    """A [h, w] uint8 mask from COCO uncompressed RLE counts (column-major): the inverse of `rle_counts`."""
    values = np.zeros(len(counts), np.uint8)
    values[1::2] = 1
    flat = np.repeat(values, counts)
    return np.ascontiguousarray(flat.reshape(w, h).T)


def mask_polygons(counts: np.ndarray, h: int, w: int, box: np.ndarray) -> list[list[float]]:
    """Outer contours of an RLE mask as COCO polygons ([x1, y1, x2, y2, ...] in image pixels), traced by OpenCV
    within the detection's box only (the mask is empty outside it up to the resize's one-pixel smear)."""
    import cv2

    mask = rle_decode(counts, h, w)
    x0, y0 = max(int(box[0]) - 1, 0), max(int(box[1]) - 1, 0)
    x1, y1 = min(math.ceil(box[2]) + 2, w), min(math.ceil(box[3]) + 2, h)
    crop = np.ascontiguousarray(mask[y0:y1, x0:x1])
    contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys: list[list[float]] = []
    for c in contours:
        pts = c.reshape(-1, 2).astype(np.float64) + np.array([x0, y0], np.float64)
        if len(pts) >= 3:  # COCO polygons need three points; a one-pixel line has none to give
            polys.append([round(float(v), 1) for v in pts.ravel()])
    return polys


# -- pose -----------------------------------------------------------------------------------------------------------
def keypoints_to_image(kpts: np.ndarray, geom: np.ndarray) -> np.ndarray:
    """Keypoints [K, nk, ndim] in letterbox pixels to image pixels, clipped to the image (`ops.scale_coords`).

    `geom` [K, 6] per detection: pad_x, pad_y, gain_x, gain_y, w0, h0 (the pipeline's letterbox inverse)."""
    out = kpts.astype(np.float32, copy=True)
    xy = (out[..., :2] - geom[:, None, 0:2]) / geom[:, None, 2:4]
    out[..., :2] = np.minimum(np.maximum(xy, np.float32(0)), geom[:, None, 4:6])
    return out


# -- obb ------------------------------------------------------------------------------------------------------------
def _covariance(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 2x2 covariance [[a, c], [c, b]] of each rotated box seen as a uniform distribution (w^2/12, h^2/12)."""
    a0 = boxes[..., 2].pow(2) / 12
    b0 = boxes[..., 3].pow(2) / 12
    cos, sin = boxes[..., 4].cos(), boxes[..., 4].sin()
    return a0 * cos.pow(2) + b0 * sin.pow(2), a0 * sin.pow(2) + b0 * cos.pow(2), (a0 - b0) * cos * sin


def probiou(b1: torch.Tensor, b2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Probabilistic IoU [..., N, M] of rotated boxes [..., N, 5] and [..., M, 5] (cx, cy, w, h, angle): 1 -
    Hellinger distance of their Gaussians (arXiv 2106.06072), the measure Ultralytics' rotated NMS uses
    (`metrics.batch_probiou`); leading dimensions are blocks compared within themselves."""
    a1, bb1, c1 = (t[..., :, None] for t in _covariance(b1))
    a2, bb2, c2 = (t[..., None, :] for t in _covariance(b2))
    dx = b1[..., :, None, 0] - b2[..., None, :, 0]
    dy = b1[..., :, None, 1] - b2[..., None, :, 1]
    sa, sb, sc = a1 + a2, bb1 + bb2, c1 + c2
    det = sa * sb - sc.pow(2)
    t1 = (sa * dy.pow(2) + sb * dx.pow(2)) / (det + eps) * 0.25
    t2 = (sc * (-dx) * dy) / (det + eps) * 0.5
    own = ((a1 * bb1 - c1.pow(2)).clamp(min=0) * (a2 * bb2 - c2.pow(2)).clamp(min=0)).sqrt()
    t3 = (det / (4 * own + eps) + eps).log() * 0.5
    bd = (t1 + t2 + t3).clamp(eps, 100.0)
    return 1 - (1.0 - (-bd).exp() + eps).sqrt()


def rotated_fast_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou: float) -> torch.Tensor:
    """Indices kept by Fast-NMS over rotated boxes, best score first; boxes of different `groups` (image, class)
    never suppress each other. A box goes when any higher-scored box of its group overlaps it above `iou`, whether
    or not that box was kept itself: Ultralytics' `TorchNMS.fast_nms`, which its OBB predictor uses.

    Groups of up to nms.BLOCK_GROUP boxes (a batch's usual case: many small (image, class) groups) are compared in
    padded blocks, many groups per call (nms.block_overlaps), so a batch costs a few dozen kernels instead of a few
    per group; larger groups go through bands of rows (`_banded_suppression`)."""
    n = boxes.shape[0]
    order = nms.group_order(scores, groups)
    b, g = boxes[order], groups[order]
    suppressed = torch.zeros(n, dtype=torch.bool, device=boxes.device)
    if n:
        all_spans = nms.spans(g)
        small = [span for span in all_spans if span[1] <= nms.BLOCK_GROUP]
        for index, valid, over in nms.block_overlaps(b, small, probiou, iou):
            suppressed[index[valid]] = over.any(1)[valid]  # any earlier (better) box of the group
        big = [span for span in all_spans if span[1] > nms.BLOCK_GROUP]
        if big:
            rows = torch.cat([torch.arange(start, start + size) for start, size in big]).to(boxes.device)
            suppressed[rows] = _banded_suppression(b[rows], g[rows], iou)
    kept = order[~suppressed]
    return kept[torch.argsort(scores[kept], descending=True, stable=True)]


def _banded_suppression(b: torch.Tensor, g: torch.Tensor, iou: float) -> torch.Tensor:
    """Fast-NMS over boxes ordered by group, best first inside, in bands of PROBIOU_ROWS rows: a band only meets
    the columns of the groups it spans, so the work is about rows x (band + group size), not N^2, and memory stays
    bounded by the band. Returns which boxes are suppressed."""
    n = b.shape[0]
    suppressed = torch.zeros(n, dtype=torch.bool, device=b.device)
    lows = list(range(0, n, PROBIOU_ROWS))
    highs = [min(lo + PROBIOU_ROWS, n) for lo in lows]
    bounds = torch.stack(  # the columns each band can meet: from its first group's start to its last group's end
        (torch.searchsorted(g, g[lows]), torch.searchsorted(g, g[[h - 1 for h in highs]], right=True))
    ).tolist() if n else [[], []]  # fmt: skip
    for lo, hi, c0, c1 in zip(lows, highs, *bounds, strict=True):
        rows = torch.arange(lo, hi, device=b.device)
        cols = torch.arange(c0, c1, device=b.device)
        over = probiou(b[lo:hi], b[c0:c1]) > iou
        over &= (g[lo:hi, None] == g[None, c0:c1]) & (cols[None, :] > rows[:, None])
        suppressed[c0:c1] |= over.any(0)
    return suppressed


def enclosing_boxes(rboxes: np.ndarray) -> np.ndarray:
    """Axis-aligned xyxy boxes [K, 4] around rotated ones [K, 5] (Ultralytics' `OBB.xyxy`), for clients that
    read `boxes` whatever the task."""
    cx, cy, w, h, t = (rboxes[:, i] for i in range(5))
    cos, sin = np.cos(t), np.sin(t)
    half_x = np.abs(w / 2 * cos) + np.abs(h / 2 * sin)
    half_y = np.abs(w / 2 * sin) + np.abs(h / 2 * cos)
    return np.stack([cx - half_x, cy - half_y, cx + half_x, cy + half_y], 1).astype(np.float32)


def rboxes_to_image(rboxes: np.ndarray, geom: np.ndarray) -> np.ndarray:
    """Rotated boxes [K, 5] from letterbox to image pixels (`scale_boxes(xywh=True)`: no clipping)."""
    out = rboxes.astype(np.float32, copy=True)
    out[:, 0:2] = (out[:, 0:2] - geom[:, 0:2]) / geom[:, 2:4]
    out[:, 2:4] = out[:, 2:4] / geom[:, 2:4]
    return out


# -- classify -------------------------------------------------------------------------------------------------------
def crop_geometry(h: int, w: int, size: int) -> tuple[int, int, int, int]:
    """(new_h, new_w, top, left) of torchvision's Resize(size) on the short side then CenterCrop(size), the
    transforms Ultralytics' classify predictor applies."""
    if h <= w:
        nh, nw = size, int(size * w / h)
    else:
        nh, nw = int(size * h / w), size
    return nh, nw, round((nh - size) / 2.0), round((nw - size) / 2.0)


def resize_crop(imgs: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> float [N, 3, size, size] in 0-255, as PIL resizes 8-bit images: torch's
    antialiased bilinear is PIL's filter (torchvision added it to match PIL), and like PIL it runs as two passes,
    width then height, each rounded to 8 bits (one pass would differ from PIL by a level on 12-20% of pixels;
    two leave PIL's fixed-point coefficients: a level on up to ~7% of the pixels of a noise image). After the
    short side is resized to `size`, both sides are >= size."""
    h, w = int(imgs.shape[2]), int(imgs.shape[3])
    nh, nw, top, left = crop_geometry(h, w, size)
    x = imgs.float()
    if nw != w:
        x = F.interpolate(x, (h, nw), mode="bilinear", align_corners=False, antialias=True).round_().clamp_(0, 255)
    if nh != h:
        x = F.interpolate(x, (nh, nw), mode="bilinear", align_corners=False, antialias=True).round_().clamp_(0, 255)
    return x[:, :, top : top + size, left : left + size]


def top_k(probs: torch.Tensor, k: int = TOP_K) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores [B, k'], classes [B, k']) best first, k' = min(k, classes): `Probs.top5`."""
    scores, classes = probs.float().topk(min(k, probs.shape[1]), dim=1)
    return scores, classes
