"""Ultralytics' detection training augmentation, with the pixels resampled on the GPU (`augmentation: gpu`).

Why: on a GPU node with 16 CPUs Ultralytics' dataloader bounds training: its workers decode, mosaic, warp and
recolour every image on the CPUs while the GPU waits (issue 23). Here the workers only read each image (or take it
from the RAM cache) resized and letterboxed as Ultralytics' validation loader does; everything random happens per
batch in the training process:

- the random draws are Ultralytics' own, per sample, on the host (`draw`): mosaic of four with its centre and
  partners, the random perspective's matrix (rotation, scale, shear, perspective, translation), HSV gains, flips;
- the boxes move on the host (`move_boxes`), a few hundred numbers a batch, as Ultralytics moves them (mosaic
  offsets, clip to the mosaic canvas, the corners through the matrix, clip, `box_candidates`), so no GPU result is
  ever waited for;
- the pixels are resampled on the GPU: each output pixel goes back through the matrix into the mosaic canvas and is
  read bilinearly from the tile's image (the flips are folded into the matrix: a box's edge at x goes to s - x, a
  pixel's centre at x to s - 1 - x, as np.fliplr moves it), then recoloured (HSV). On a GPU
  with Triton that is one fused kernel (`gpu_augment_fused`); `warp_images` (one `grid_sample` per tile for the
  whole batch) and `recolour` here are the reference it is tested against, and what runs elsewhere.

Mosaic partners are other images of the same (shuffled) batch, where Ultralytics draws them from the data set or its
recent-image buffer: the same distribution of images (a pool of the last 8 batches on the GPU, closer to that
buffer, ended the crowded set at 30 epochs where the batch alone did: docs/benchmarks.md). What the GPU path does
not do (copy-paste, mixup, cutmix, Albumentations, a 9-image mosaic) is refused before training by `unsupported`,
never silently skipped. numpy and torch (and Ultralytics' own `box_candidates`): tests run it on the CPU against
Ultralytics' transforms.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional

from yolo_workloads.contract import gpu_augmentation_lacks
from yolo_workloads.train import gpu_decode, load_ahead
from yolo_workloads.train.device_images import DeviceImages
from yolo_workloads.train.host_waits import count_labels

FILL = 114.0
"""Ultralytics' border and letterbox grey."""


@dataclass(frozen=True)
class Hyper:
    """The augmentation arguments, by Ultralytics' names and with Ultralytics' meaning."""

    imgsz: int
    mosaic: float = 1.0
    degrees: float = 0.0
    translate: float = 0.1
    scale: float = 0.5
    shear: float = 0.0
    perspective: float = 0.0
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    flipud: float = 0.0
    fliplr: float = 0.5

    @classmethod
    def from_args(cls, args: Any) -> Hyper:
        """From an Ultralytics trainer's `args`."""
        names = [f for f in cls.__dataclass_fields__ if f != "imgsz"]
        return cls(imgsz=int(args.imgsz), **{n: float(getattr(args, n)) for n in names})


def recolours(args: Mapping[str, Any]) -> bool:
    """Whether Ultralytics' train arguments leave an HSV gain on (the fused kernel's `HSV` variant). One left out
    has Ultralytics' default (Hyper's, all on); one that is not a number counts as on (Ultralytics refuses it)."""
    return any(_not_zero(args.get(name, getattr(Hyper, name))) for name in ("hsv_h", "hsv_s", "hsv_v"))


def _not_zero(value: Any) -> bool:
    try:
        return float(value) != 0.0
    except (TypeError, ValueError):
        return True


def unsupported(args: Mapping[str, Any]) -> list[str]:
    """What in Ultralytics' train arguments the GPU path cannot do, one phrase each (empty: it does all of it)."""
    found = gpu_augmentation_lacks(args)
    if args.get("augmentations"):
        found.append("augmentations (custom Albumentations transforms)")
    return found


@dataclass(frozen=True)
class Draw:
    """One batch's random choices, per sample (B samples)."""

    mosaic: np.ndarray  # (B,) bool
    sources: np.ndarray  # (B, 4) int: batch index of each tile's image; column 0 is the sample's own
    center: np.ndarray  # (B, 2) int: the mosaic centre (xc, yc) in the 2s x 2s canvas
    canvas: np.ndarray  # (B, 2): canvas width, height (2s for a mosaic, else the image's own)
    matrix: np.ndarray  # (B, 3, 3): canvas -> output frame of the boxes, flips included
    flips: np.ndarray  # (B, 2) bool: left-right, up-down (the pixels' matrix differs from the boxes' by them)
    scale: np.ndarray  # (B,): the random perspective's scale (box_candidates compares areas with it)
    gains: np.ndarray  # (B, 3): HSV gains r, each image multiplied (s, v) or shifted (h) by them


@dataclass(frozen=True)
class Tiles:
    """Where each sample's (up to) four tiles sit in its canvas."""

    origin: np.ndarray  # (B, 4, 2): canvas position of the tile image's top-left pixel
    rect: np.ndarray  # (B, 4, 4): visible part in the canvas, x0 y0 x1 y1 (empty: x1 <= x0)


def draw(hyp: Hyper, sizes: np.ndarray, rng: np.random.Generator, mosaic_open: bool = True) -> Draw:
    """Ultralytics' random parameters for a batch of images whose resized (h, w) are `sizes` (B, 2)."""
    b, s = len(sizes), hyp.imgsz
    mosaic = (rng.uniform(0, 1, b) <= hyp.mosaic) if mosaic_open and hyp.mosaic > 0 else np.zeros(b, bool)
    sources = np.concatenate([np.arange(b)[:, None], rng.integers(0, b, (b, 3))], axis=1)
    center = rng.uniform(s // 2, 2 * s - s // 2, (b, 2)).astype(np.int64)
    canvas = np.where(mosaic[:, None], 2 * s, sizes[:, ::-1]).astype(np.float64)
    scale = rng.uniform(1 - hyp.scale, 1 + hyp.scale, b)
    matrix = _perspective(hyp, canvas, scale, rng)
    flips = np.stack([rng.uniform(0, 1, b) < hyp.fliplr, rng.uniform(0, 1, b) < hyp.flipud], axis=1)
    for k in np.flatnonzero(flips.any(axis=1)):
        matrix[k] = _flip(s, *flips[k]) @ matrix[k]
    gains = rng.uniform(-1, 1, (b, 3)) * [hyp.hsv_h, hyp.hsv_s, hyp.hsv_v]
    return Draw(mosaic, sources, center, canvas, matrix, flips, scale, gains)


def _perspective(hyp: Hyper, canvas: np.ndarray, scale: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """RandomPerspective's M = T @ S @ R @ P @ C for each sample's canvas (w, h) onto the s x s output."""
    b = len(canvas)
    c, p, r, sh, t = (np.tile(np.eye(3), (b, 1, 1)) for _ in range(5))
    c[:, 0, 2], c[:, 1, 2] = -canvas[:, 0] / 2, -canvas[:, 1] / 2
    p[:, 2, :2] = rng.uniform(-hyp.perspective, hyp.perspective, (b, 2))
    a = np.deg2rad(rng.uniform(-hyp.degrees, hyp.degrees, b))
    cos, sin = scale * np.cos(a), scale * np.sin(a)  # cv2.getRotationMatrix2D about the origin
    r[:, 0, 0], r[:, 0, 1], r[:, 1, 0], r[:, 1, 1] = cos, sin, -sin, cos
    shear = np.tan(np.deg2rad(rng.uniform(-hyp.shear, hyp.shear, (b, 2))))
    sh[:, 0, 1], sh[:, 1, 0] = shear[:, 0], shear[:, 1]
    t[:, :2, 2] = rng.uniform(0.5 - hyp.translate, 0.5 + hyp.translate, (b, 2)) * hyp.imgsz
    return t @ sh @ r @ p @ c


def _flip(s: int, lr: bool, ud: bool) -> np.ndarray:
    f = np.eye(3)
    if lr:
        f[0, 0], f[0, 2] = -1.0, s
    if ud:
        f[1, 1], f[1, 2] = -1.0, s
    return f


def tiles(d: Draw, sizes: np.ndarray, imgsz: int) -> Tiles:
    """Each sample's tiles: Ultralytics' 2x2 mosaic around the centre, or the one image on a canvas of its size."""
    s2 = 2 * imgsz
    h, w = sizes[d.sources, 0], sizes[d.sources, 1]  # (B, 4)
    xc, yc = d.center[:, :1], d.center[:, 1:]
    left, top = xc - w, yc - h
    ox = np.stack([left[:, 0], xc[:, 0], left[:, 2], xc[:, 0]], axis=1)
    oy = np.stack([top[:, 0], top[:, 1], yc[:, 0], yc[:, 0]], axis=1)
    x0 = np.stack([np.maximum(left[:, 0], 0), xc[:, 0], np.maximum(left[:, 2], 0), xc[:, 0]], axis=1)
    y0 = np.stack([np.maximum(top[:, 0], 0), np.maximum(top[:, 1], 0), yc[:, 0], yc[:, 0]], axis=1)
    x1 = np.stack([xc[:, 0], np.minimum(xc[:, 0] + w[:, 1], s2), xc[:, 0], np.minimum(xc[:, 0] + w[:, 3], s2)], 1)
    y1 = np.stack([yc[:, 0], yc[:, 0], np.minimum(yc[:, 0] + h[:, 2], s2), np.minimum(yc[:, 0] + h[:, 3], s2)], 1)
    origin = np.stack([ox, oy], axis=2)
    rect = np.stack([x0, y0, x1, y1], axis=2)
    single = ~d.mosaic
    origin[single] = 0
    rect[single] = 0
    rect[single, 0, 2:] = sizes[single][:, ::-1]  # the whole image, (w, h)
    return Tiles(origin, rect)


@dataclass(frozen=True)
class Boxes:
    """Labels of a batch the way Ultralytics' collate gives them: rows grouped by image, in image order."""

    batch_idx: np.ndarray  # (N,)
    cls: np.ndarray  # (N,)
    xyxy: np.ndarray  # (N, 4) pixels


def move_boxes(d: Draw, t: Tiles, boxes: Boxes, imgsz: int) -> Boxes:
    """The labels of each output sample: its tiles' boxes placed in the canvas (clipped to it and the empty ones
    dropped, as Ultralytics' mosaic does), through the sample's matrix, clipped to the output and filtered by
    Ultralytics' `box_candidates`. `boxes` are in each image's resized frame (no letterbox padding)."""
    counts = np.bincount(boxes.batch_idx, minlength=len(d.mosaic))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    tiles_used = np.where(d.mosaic[:, None], True, np.arange(4)[None, :] == 0)
    pb, pq = np.nonzero(tiles_used)  # pairs (sample, tile), sample-major: rows stay grouped by sample
    pj = d.sources[pb, pq]
    lengths = counts[pj]
    pair = np.repeat(np.arange(len(pb)), lengths)
    offset = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    rows = starts[pj][pair] + offset
    sample = pb[pair]
    xyxy = boxes.xyxy[rows] + np.tile(t.origin[pb, pq][pair], 2)
    mosaic = d.mosaic[sample]
    canvas = np.tile(d.canvas[sample], 2)
    clipped = np.clip(xyxy, 0, canvas)
    xyxy = np.where(mosaic[:, None], clipped, xyxy)
    keep = ~mosaic | ((xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1]))  # remove_zero_area_boxes
    sample, xyxy, rows = sample[keep], xyxy[keep], rows[keep]
    moved = np.clip(_through(d.matrix[sample], xyxy), 0, imgsz)
    from ultralytics.data.augment import RandomPerspective  # the training process has Ultralytics loaded already

    keep = RandomPerspective.box_candidates(box1=(xyxy * d.scale[sample, None]).T, box2=moved.T)
    return Boxes(sample[keep], boxes.cls[rows[keep]], moved[keep])


def _through(m: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
    """The box around each box's four corners after its matrix (m: (N, 3, 3)), as RandomPerspective.apply_bboxes.

    Written out per matrix entry, not as a stacked matmul with min/max over the corners: numpy runs those as a loop
    over tiny matrices and a reduction over a 4-wide axis, 11 of the 16 ms a crowded batch's boxes took on the host
    of an H100 (2026-12-05); the same products and sums, elementwise."""
    x, y = xyxy[:, [0, 2, 2, 0]], xyxy[:, [1, 3, 1, 3]]  # the corners, (N, 4) each

    def row(i: int) -> np.ndarray:
        return m[:, i, 0:1] * x + m[:, i, 1:2] * y + m[:, i, 2:3]  # type: ignore[no-any-return]

    w = row(2)
    px, py = row(0) / w, row(1) / w
    return np.stack([_corner(np.minimum, px), _corner(np.minimum, py), _corner(np.maximum, px),
                     _corner(np.maximum, py)], axis=1)  # fmt: skip


def _corner(pick: np.ufunc, v: np.ndarray) -> np.ndarray:
    """`pick` (minimum, maximum) over the four corners' columns, pairwise: faster than a reduction over axis 1."""
    return pick(pick(v[:, 0], v[:, 1]), pick(v[:, 2], v[:, 3]))  # type: ignore[no-any-return]


COLUMNS = (("inverse", 9), ("origin", 8), ("rect", 16), ("empty", 4), ("sources", 4), ("low", 8), ("high", 8),
           ("gains", 3))  # fmt: skip
"""The per-sample table the host sends (float32, one row a sample): its columns by name and width, in order; the
fused kernel (`gpu_augment_fused`) reads the same row by these offsets."""


def column(name: str) -> int:
    """Where `name` starts in a row of the table."""
    names = [n for n, _ in COLUMNS]
    return sum(w for _, w in COLUMNS[: names.index(name)])


@dataclass(frozen=True)
class OnDevice:
    """What the pixel work needs from the host's draws, on the device, sent in one copy that nothing waits for."""

    table: torch.Tensor  # (B, sum of COLUMNS' widths) float32: the rows below, as sent
    inverse: torch.Tensor  # (B, 3, 3): output pixel -> canvas
    origin: torch.Tensor  # (B, 4, 2)
    rect: torch.Tensor  # (B, 4, 4)
    empty: torch.Tensor  # (B, 4) bool
    sources: torch.Tensor  # (B, 4) long
    low: torch.Tensor  # (B, 4, 2): the first pixel (x, y) of each tile's image in its letterboxed input
    high: torch.Tensor  # (B, 4, 2): its last pixel
    gains: torch.Tensor  # (B, 3)
    tiles: int  # 4 when any sample is a mosaic, else 1


def pixel_matrix(d: Draw) -> np.ndarray:
    """Canvas -> output pixel centres: the boxes' matrix less one pixel along each flipped axis (a flip takes a box
    edge at x to s - x, but the pixel centred at x to s - 1 - x, as np.fliplr / np.flipud and so Ultralytics do)."""
    shift = np.tile(np.eye(3), (len(d.matrix), 1, 1))
    shift[:, :2, 2] = -d.flips.astype(np.float64)
    pixel: np.ndarray = shift @ d.matrix
    return pixel


def on_device(d: Draw, t: Tiles, pads: np.ndarray, sizes: np.ndarray, device: torch.device) -> OnDevice:
    """The draws as one pinned host table, copied without blocking (a blocking copy would wait for the GPU to finish
    the previous step, and the host could no longer prepare the next batch meanwhile)."""
    b = len(d.mosaic)
    low = pads[d.sources]
    high = low + sizes[d.sources][..., ::-1] - 1
    empty = (t.rect[:, :, 2:] <= t.rect[:, :, :2]).any(axis=2)
    columns = {"inverse": np.linalg.inv(pixel_matrix(d)), "origin": t.origin, "rect": t.rect, "empty": empty,
               "sources": d.sources, "low": low, "high": high, "gains": d.gains}  # fmt: skip
    rows = np.concatenate([columns[name].reshape(b, -1) for name, _ in COLUMNS], axis=1)
    table = torch.as_tensor(rows, dtype=torch.float32)
    if device.type == "cuda":
        table = table.pin_memory()
    table = table.to(device, non_blocking=True)
    inv, origin, rect, empty_, sources, low_, high_, gains = torch.split(table, [w for _, w in COLUMNS], dim=1)
    return OnDevice(
        table=table, inverse=inv.reshape(b, 3, 3), origin=origin.reshape(b, 4, 2), rect=rect.reshape(b, 4, 4),
        empty=empty_ > 0.5, sources=sources.round().long(), low=low_.reshape(b, 4, 2), high=high_.reshape(b, 4, 2),
        gains=gains, tiles=4 if bool(d.mosaic.any()) else 1,
    )  # fmt: skip


def _pixel_dtype(device: torch.device) -> torch.dtype:
    """Half precision for the pixels on CUDA: half the memory traffic, which bounds this work; at 640 px a sampling
    position is then exact to 0.16 px. The CPU (tests, CPU-only nodes) computes in single precision."""
    return torch.float16 if device.type == "cuda" else torch.float32


@functools.cache
def _pixel_grid(imgsz: int, device: str) -> torch.Tensor:
    """(3, s*s): every output pixel's (x, y, 1)."""
    axis = torch.arange(imgsz, dtype=torch.float32, device=device)
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([gx, gy, torch.ones_like(gx)]).reshape(3, -1)


def warp_images(images: torch.Tensor, p: OnDevice, imgsz: int) -> torch.Tensor:
    """Each sample's output pixels (B, 3, s, s, float 0-255), as cv2.warpAffine would read them from the mosaic
    canvas: bilinear, with the canvas's grey wherever no tile is.

    `images` (B, 3, S, S) are the letterboxed inputs; a tile reads only its image (`p.low` to `p.high`), never the
    letterbox grey around it. Each tile's pixels weigh by their bilinear share of the point (1 inside the tile,
    falling to 0 across its edge pixel), the rest is grey: the blend cv2 makes at an edge.
    """
    b, big = images.shape[0], images.shape[-1]
    dtype = _pixel_dtype(images.device)
    canvas = p.inverse @ _pixel_grid(imgsz, str(images.device))  # (B, 3, s*s)
    cx = (canvas[:, 0] / canvas[:, 2]).view(b, 1, imgsz, imgsz)
    cy = (canvas[:, 1] / canvas[:, 2]).view(b, 1, imgsz, imgsz)
    painted = torch.zeros((b, 3, imgsz, imgsz), dtype=dtype, device=images.device)
    cover = torch.zeros((b, 1, imgsz, imgsz), dtype=dtype, device=images.device)
    for q in range(p.tiles):
        x0, y0, x1, y1 = (v.view(b, 1, 1, 1) for v in p.rect[:, q].unbind(1))
        share = (cx - x0 + 1).clamp(0, 1) * (x1 - cx).clamp(0, 1) * (cy - y0 + 1).clamp(0, 1) * (y1 - cy).clamp(0, 1)
        share = (share * ~p.empty[:, q].view(b, 1, 1, 1)).to(dtype)  # an empty tile has no edge either
        ox, oy = (v.view(b, 1, 1, 1) for v in p.origin[:, q].unbind(1))
        lx, ly = (v.view(b, 1, 1, 1) for v in p.low[:, q].unbind(1))
        hx, hy = (v.view(b, 1, 1, 1) for v in p.high[:, q].unbind(1))
        sx = torch.minimum(torch.maximum(cx - ox + lx, lx), hx)  # beyond its image, a tile repeats its edge
        sy = torch.minimum(torch.maximum(cy - oy + ly, ly), hy)
        grid = torch.cat([(sx + 0.5) * (2 / big) - 1, (sy + 0.5) * (2 / big) - 1], dim=1).permute(0, 2, 3, 1)
        source = images.index_select(0, p.sources[:, q]).to(dtype)
        tile = functional.grid_sample(source, grid.to(dtype), padding_mode="border", align_corners=False)  # bilinear
        painted += share * tile
        cover += share
    return painted + FILL * (1 - cover).clamp(min=0)


def recolour(images: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """RandomHSV on a batch (B, 3, H, W, RGB 0-255, in the images' precision): hue shifted by gains[:, 0] of the
    circle, saturation and value multiplied by 1 + gains[:, 1:], clipped."""
    x = images / 255.0
    maxc, argmax = x.max(dim=1)
    minc = x.min(dim=1).values
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    r, g, b = x.unbind(1)
    hue = torch.where(
        argmax == 0, ((g - b) / safe) % 6, torch.where(argmax == 1, (b - r) / safe + 2, (r - g) / safe + 4)
    )
    hue = torch.where(delta > 0, hue / 6, torch.zeros_like(hue))
    sat = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    k = gains.to(x.dtype)[:, :, None, None]
    hue = (hue + k[:, 0]) % 1.0
    sat = (sat * (1 + k[:, 1])).clamp(0, 1)
    val = (maxc * (1 + k[:, 2])).clamp(0, 1)
    return _hsv_to_rgb(hue, sat, val) * 255.0


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(B, H, W) hue in turns, saturation and value in 0-1 to (B, 3, H, W) RGB 0-1, without per-sector copies."""
    h6 = h * 6
    channels = []
    for n in (5.0, 3.0, 1.0):  # red, green, blue
        k = (h6 + n) % 6
        channels.append(v - v * s * torch.minimum(k, 4 - k).clamp(0, 1))
    return torch.stack(channels, dim=1)


def pixels(images: torch.Tensor, p: OnDevice, imgsz: int, hsv: bool) -> torch.Tensor:
    """The augmented pixels: the fused kernel where it runs (a GPU with Triton), else the reference above."""
    if images.device.type == "cuda" and _fused_usable(images.device):
        from yolo_workloads.train import gpu_augment_fused

        return gpu_augment_fused.warp_recolour(images, p, imgsz, hsv)
    with torch.autocast(images.device.type, enabled=False):
        out = warp_images(images, p, imgsz)
        return recolour(out, p.gains) if hsv else out


@functools.cache
def _fused_usable(device: torch.device) -> bool:
    """Whether the fused kernel runs here; said once on stderr either way, with the reason when it does not."""
    from yolo_workloads.train import gpu_augment_fused  # it builds on this module's table layout

    usable = gpu_augment_fused.available(device)
    reason = "" if usable else gpu_augment_fused.missing() or "Triton is not installed"
    print(f"train: augmentation pixels by {'the fused kernel' if usable else 'PyTorch'}"
          + (f" ({reason})" if reason else ""), file=sys.stderr, flush=True)  # fmt: skip
    return usable


@dataclass(frozen=True)
class Plan:
    """One batch's host half of the augmentation (`GpuAugment.plan`): where its images sit, its draw, and its labels
    after it."""

    sizes: np.ndarray  # (B, 2): each image's resized (h, w)
    pads: np.ndarray  # (B, 2): each image's letterbox padding in the loader's square
    draw: Draw
    tiles: Tiles
    boxes: Boxes  # the output samples' labels


class GpuAugment:
    """Augments a batch from the letterbox-only training loader (see the module docstring), on `device`."""

    def __init__(self, hyp: Hyper, seed: int, images: DeviceImages | None = None) -> None:
        self.hyp = hyp
        self.rng = np.random.default_rng(seed)
        self.mosaic_open = hyp.mosaic > 0
        self.hsv = recolours(vars(hyp))  # the fused kernel's variant: fixed for the run
        self.images = images  # the training set's pixels on the device: batches then carry labels only

    def close_mosaic(self) -> None:
        """Ultralytics' last `close_mosaic` epochs: one image a sample from now on."""
        self.mosaic_open = False

    def plan(self, batch: dict[str, Any]) -> Plan:
        """The host's half of a batch's augmentation: its random draw and its labels moved (no pixels, no GPU).
        Plans are drawn from one generator: made in the loader's order (`load_ahead`), they come out the same."""
        s = self.hyp.imgsz
        sizes, pads = gpu_decode.placement(batch)
        d = draw(self.hyp, sizes, self.rng, self.mosaic_open)
        t = tiles(d, sizes, s)
        return Plan(sizes, pads, d, t, move_boxes(d, t, _resized_frame(batch, pads, s), s))

    def __call__(self, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        """The batch with augmented images (float 0-255 on `device`) and their labels (on `device`), from its plan
        made ahead (load_ahead.PLANNED) or one made now."""
        s = self.hyp.imgsz
        p = batch.pop(load_ahead.PLANNED, None) or self.plan(batch)
        if self.images is not None and batch["img"].numel() == 0:  # each image at its slot's top-left corner
            images, pixel_pads = self.images.gather(batch["im_file"]), np.zeros_like(p.pads)
        elif load_ahead.DECODED in batch:  # decoded ahead by the loader's thread
            images, pixel_pads = load_ahead.take(batch, device)
        elif gpu_decode.ENCODED in batch:  # JPEGs decoded here, other images as their workers letterboxed them
            images, pixel_pads = gpu_decode.batch_images(batch, p.sizes, p.pads, s, device)
        else:
            images, pixel_pads = batch["img"].to(device, non_blocking=True), p.pads  # pinned by the loader on CUDA
        gpu_decode.forget(batch)
        params = on_device(p.draw, p.tiles, pixel_pads, p.sizes, device)
        batch["img"] = pixels(images, params, s, hsv=self.hsv)
        batch.update(_as_tensors(p.boxes, s, device))
        sides = (p.boxes.xyxy[:, 2:] - p.boxes.xyxy[:, :2]) / s
        count_labels(batch, p.boxes.batch_idx, len(p.sizes), sides)  # the loss sizes by them, reading nothing back
        batch["resized_shape"] = [(s, s)] * len(p.sizes)
        return batch


def _resized_frame(batch: dict[str, Any], pads: np.ndarray, imgsz: int) -> Boxes:
    """The loader's labels (normalised xywh of the letterboxed square) as pixels of each resized image."""
    idx = batch["batch_idx"].numpy().astype(np.int64)
    xywh = batch["bboxes"].numpy().astype(np.float64) * imgsz
    xyxy = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], axis=1)
    xyxy -= np.tile(pads[idx], 2)
    return Boxes(idx, batch["cls"].numpy().reshape(-1), xyxy)


def _as_tensors(boxes: Boxes, imgsz: int, device: torch.device) -> dict[str, torch.Tensor]:
    xy = (boxes.xyxy[:, :2] + boxes.xyxy[:, 2:]) / 2
    wh = boxes.xyxy[:, 2:] - boxes.xyxy[:, :2]
    columns = np.concatenate([boxes.batch_idx[:, None], boxes.cls[:, None], xy / imgsz, wh / imgsz], axis=1)
    host = torch.as_tensor(columns, dtype=torch.float32)
    if device.type == "cuda":  # pinned, so the copy is queued and nothing waits for the GPU
        host = host.pin_memory()
    table = host.to(device, non_blocking=True)
    return {"batch_idx": table[:, 0], "cls": table[:, 1:2], "bboxes": table[:, 2:6]}
