"""Segment masks of a batch made only where they can be non-zero: each detection's columns of the letterbox.

Why: a mask is empty outside its box, yet upsampling every detection's logits to the whole letterbox (640 x 640)
and run-length encoding whole images cost 27 of a batch's 48 ms on the H200 (docs/benchmarks.md, issue 19). Here
each detection gets a strip: every row of the letterbox, but only the columns its box spans (plus one prototype
column either side). Full-height strips keep two things exact:

- the values: the prototypes are a power-of-two fraction of the letterbox (160 of 640), so the bilinear upsample
  of a strip of prototype columns has the same scale, source positions and weights as the whole image's; the
  columns one prototype column from a strip's edge, where clamping would differ, lie outside the box and are
  zeroed anyway. So the masks equal `tasks.upsample_masks`, and Ultralytics', bit for bit;
- the encoding: COCO's RLE runs column-major, so a strip of whole columns is one contiguous run of the image's
  pixels, and its runs are the image's runs, zeros before and after.

Other prototype ratios fall back to whole-letterbox masks through the same encoder (a strip as wide as the image).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

from yolo_workloads.serve import tasks

Geometry = Callable[[int, int], tuple[int, int, int, int]]  # (h0, w0) -> (nh, nw, top, left) of the letterbox


@dataclass(frozen=True)
class MaskStrips:
    """Binary masks of some detections as full-height column strips of the letterbox, all of one width."""

    masks: torch.Tensor  # bool [n, S, W]
    x0: torch.Tensor  # long [n]: the letterbox column of each strip's first column
    index: np.ndarray  # int64 [n]: each strip's detection among those given to `mask_strips`


def mask_strips(logits: torch.Tensor, boxes: torch.Tensor, size: int) -> list[MaskStrips]:
    """The masks of `logits` [K, mh, mw] cut to their `boxes` [K, 4] (xyxy, letterbox pixels), as
    `tasks.upsample_masks` makes them, in strips of similar widths (sorted, so little is padded) and chunks of
    tasks.MASK_CHUNK_PIXELS. One host sync, for the widths."""
    k, mh, mw = logits.shape
    r = size // mw
    if k == 0:
        return []
    if r * mw != size or r * mh != size or r & (r - 1):
        whole = tasks.upsample_masks(logits, boxes, size)
        return [MaskStrips(whole, torch.zeros(k, dtype=torch.long, device=logits.device), np.arange(k))]
    b = boxes.float()
    c0 = (torch.floor(b[:, 0] / r) - 1).clamp(0, mw - 1).long()
    c1 = (torch.ceil(b[:, 2] / r) + 1).clamp(1, mw).long()
    widths, order = torch.sort((c1 - c0).clamp(min=1))
    host = torch.stack((widths, order)).cpu().numpy()
    strips: list[MaskStrips] = []
    for lo, hi in _chunks(host[0], size * r):
        idx = order[lo:hi]
        ws = int(host[0][hi - 1])
        start = torch.minimum(c0[idx], torch.full_like(c0[idx], mw - ws))
        cols = start[:, None] + torch.arange(ws, device=logits.device)
        src = logits[idx].gather(2, cols[:, None, :].expand(-1, mh, -1))
        up = F.interpolate(src[None], (size, ws * r), mode="bilinear", align_corners=False)[0]
        strips.append(MaskStrips(_inside_box(up, b[idx], start * r), start * r, host[1][lo:hi]))
    return strips


def _chunks(widths: np.ndarray, pixels_per_column: int) -> list[tuple[int, int]]:
    """Ranges of the sorted `widths` whose strips, each as wide as the range's widest, fit MASK_CHUNK_PIXELS."""
    out: list[tuple[int, int]] = []
    lo = 0
    for i in range(1, len(widths) + 1):
        if i == len(widths) or (i + 1 - lo) * int(widths[i]) * pixels_per_column > tasks.MASK_CHUNK_PIXELS:
            out.append((lo, i))
            lo = i
    return out


def _inside_box(up: torch.Tensor, boxes: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """Logits [n, S, W] > 0 inside each box (columns counted from `x0`), as `tasks.upsample_masks` keeps them."""
    _, s, w = up.shape
    rows = torch.arange(s, device=up.device, dtype=torch.float32)
    cols = x0[:, None].float() + torch.arange(w, device=up.device, dtype=torch.float32)
    inside_x = (cols >= boxes[:, 0:1]) & (cols < boxes[:, 2:3])
    inside_y = (rows[None, :] >= boxes[:, 1:2]) & (rows[None, :] < boxes[:, 3:4])
    return (up > 0) & inside_y[:, :, None] & inside_x[:, None, :]


def paste(strips: torch.Tensor, x0: torch.Tensor, size: int) -> torch.Tensor:
    """Whole letterbox masks [n, S, S] (bool) from strips [n, S, W] starting at columns `x0`."""
    n, s, w = strips.shape
    out = torch.zeros((n, s, size), dtype=torch.bool, device=strips.device)
    cols = x0[:, None] + torch.arange(w, device=strips.device)
    out.scatter_(2, cols[:, None, :].expand(n, s, w), strips)
    return out


# -- run-length encoding -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Part:
    """Masks of one image size to encode: full-height strips [n, h, W] of an image h x `width`, strip k starting
    at image column `col0[k]` (may be < 0 or run past the image: those columns count as 0). A whole mask is a
    strip of the image's width at column 0."""

    strips: torch.Tensor
    col0: torch.Tensor
    width: int


def strip_changes(part: Part) -> torch.Tensor:
    """[n * (W*h + 1)] bool: where consecutive pixels of each strip differ, column-major, the strip padded with one
    0 pixel before and one after (the image's pixels around a strip are 0)."""
    n, h, w = part.strips.shape
    cols = part.col0[:, None] + torch.arange(w, device=part.strips.device)
    inside = (cols >= 0) & (cols < part.width)
    flat = (part.strips & inside[:, None, :]).transpose(1, 2).reshape(n, w * h)
    zero = torch.zeros((n, 1), dtype=torch.bool, device=flat.device)
    padded = torch.cat((zero, flat, zero), 1)
    return (padded[:, 1:] != padded[:, :-1]).reshape(-1)


def encode(parts: list[Part]) -> list[list[np.ndarray]]:
    """COCO uncompressed RLE counts of every strip of every part (`tasks.rle_counts`), per part in strip order.
    One `nonzero` and one copy to the host for them all: only the change positions and the strips' columns."""
    if not parts:
        return []
    changes = torch.cat([strip_changes(p) for p in parts]).nonzero()[:, 0]
    host = torch.cat((changes, *(p.col0 for p in parts))).cpu().numpy()
    positions, col0s = host[: len(changes)], host[len(changes) :]
    spans = np.cumsum([0, *(p.strips.shape[0] * (p.strips.shape[1] * p.strips.shape[2] + 1) for p in parts)])
    cuts = np.searchsorted(positions, spans)
    out: list[list[np.ndarray]] = []
    c = 0
    for j, p in enumerate(parts):
        n, h, w = p.strips.shape
        pos = positions[cuts[j] : cuts[j + 1]] - spans[j]
        out.append(_part_counts(pos // (w * h + 1), pos % (w * h + 1), col0s[c : c + n], h, p.width))
        c += n
    return out


def _part_counts(owner: np.ndarray, t: np.ndarray, col0: np.ndarray, h: int, width: int) -> list[np.ndarray]:
    """RLE counts of one part's strips from its change positions (strip `owner`, position `t` along the padded
    strip): a change at t lies between image pixels col0*h + t - 1 and the next; -1 means the image's first pixel
    is a 1, and area - 1 (after the last pixel) is no change of the image."""
    n, area = len(col0), h * width
    pair = col0[owner] * h + t - 1
    first = np.zeros(n, bool)
    first[owner[pair == -1]] = True
    sel = (pair >= 0) & (pair <= area - 2)
    return tasks.rle_counts(first, owner[sel] * (area - 1) + pair[sel], np.full(n, area, np.int64))


def group_masks(
    strips: list[MaskStrips], sizes: list[tuple[int, int]], size: int, geometry: Geometry
) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Which of a group's detections have a non-empty letterbox mask (bool [K], detection order), and every
    detection's RLE counts over its image (`sizes`: each detection's (h0, w0)), in detection order. An image of
    the letterbox content's own size is a crop, so its strips are encoded as they are; other sizes are resized
    from whole letterbox masks as `ops.scale_masks` does (`tasks.masks_to_image`)."""
    device = strips[0].masks.device if strips else torch.device("cpu")
    keep = torch.zeros(len(sizes), dtype=torch.bool, device=device)
    parts: list[Part] = []
    owners: list[np.ndarray] = []
    for chunk in strips:
        keep[torch.from_numpy(chunk.index).to(device)] = chunk.masks.flatten(1).any(1)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, d in enumerate(chunk.index.tolist()):
            by_size.setdefault(sizes[d], []).append(i)
        for (h0, w0), idx in by_size.items():
            sel = torch.as_tensor(idx, device=device) if len(idx) < len(chunk.index) else None
            m = chunk.masks if sel is None else chunk.masks[sel]
            x0 = chunk.x0 if sel is None else chunk.x0[sel]
            parts.append(_image_part(m, x0, size, (h0, w0), geometry))
            owners.append(chunk.index[idx])
    rles: list[np.ndarray] = [np.zeros(0, np.int32)] * len(sizes)
    for owner, counts in zip(owners, encode(parts), strict=True):
        for d, c in zip(owner.tolist(), counts, strict=True):
            rles[d] = c
    return keep, rles


def _image_part(m: torch.Tensor, x0: torch.Tensor, size: int, hw: tuple[int, int], geometry: Geometry) -> Part:
    """Strips of one image size mapped to that image: a crop when the letterbox holds it unscaled, else resized."""
    h0, w0 = hw
    nh, nw, top, left = geometry(h0, w0)
    if (nh, nw) == (h0, w0):
        return Part(m[:, top : top + nh], x0 - left, w0)
    whole = tasks.masks_to_image(paste(m, x0, size), top, left, nh, nw, h0, w0)
    return Part(whole, torch.zeros_like(x0), w0)
