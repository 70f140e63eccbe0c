"""The GPU augmentation's pixel work (warp through the mosaic canvas, then HSV) as one Triton kernel.

Why: `gpu_augment.warp_images` and `recolour` are the reference, written as PyTorch tensor operations; on the H200
they took 41 ms for a batch of 128 at 640 (issue 23), about as long as the training step itself, because each of
their ~100 element-wise operations reads and writes the whole batch again. Here each output pixel is computed once,
in registers: its point in the canvas, the bilinear read of the (up to four) tiles that cover it, read straight from
the loader's uint8 images, the grey where none does, the HSV gains, one write. The arithmetic is the reference's,
in single precision; tests compare the two (on the CPU through Triton's interpreter, on CUDA for real).

Triton ships with PyTorch's CUDA builds and compiles each kernel's launcher with the system's C compiler on first
use (the workload image carries gcc and Python's headers for it); where any of that is missing, or the images are
not on a GPU, `available` says no and the caller uses the reference.

Compiling takes seconds in a fresh pod (Triton's on-disk cache is empty there), and the first batch would wait for
it; `compile_ahead` compiles the kernel's variants in a thread while the trainer sets up (data sets, RAM cache), and
the first call waits for that thread instead of compiling again.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import sysconfig
import threading
import time
from pathlib import Path

import torch

from yolo_workloads.train.gpu_augment import COLUMNS, FILL, OnDevice, column

try:  # PyTorch's CUDA builds carry Triton; without it `available` says no and nothing below is defined
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover (the project's images and venvs have it)
    triton = None

BLOCK = 1024
"""Output pixels a program computes (of one sample)."""


def available(device: torch.device) -> bool:
    """Whether the fused kernel can run on `device`: Triton importable, and a GPU (or Triton's CPU interpreter), and
    on a GPU what Triton needs to build its launcher the first time (`missing` empty)."""
    if os.environ.get("TRITON_INTERPRET", "") == "1":
        return triton is not None
    return device.type == "cuda" and triton is not None and not missing()


@functools.cache
def missing() -> str:
    """What Triton lacks here to compile a kernel's launcher (a C compiler, Python's headers), or "" when nothing:
    Triton builds it with the system's compiler on first use, and an image without one would fail there."""
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("clang")
    if not compiler:
        return "no C compiler (gcc or clang on PATH, or CC)"
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.is_file():
        return f"no Python headers ({headers})"
    return ""


_AHEAD: dict[str, threading.Thread] = {}
"""The compile-ahead thread of each device."""


def compile_ahead(device: torch.device, imgsz: int, hsv: bool) -> None:
    """Compile the kernel for `device` in a thread of its own (once a process): the variants training takes, with
    mosaic (4 tiles) and after it closes (1 tile), on uint8 images of `imgsz` (Triton specialises on the arguments'
    types and on sizes' divisibility by 16, which a training's batches share with these)."""
    if not available(device) or os.environ.get("TRITON_INTERPRET", "") == "1" or str(device) in _AHEAD:
        return

    def run() -> None:
        start = time.perf_counter()
        try:
            with torch.cuda.device(device):
                images = torch.zeros((1, 3, imgsz, imgsz), dtype=torch.uint8, device=device)
                table = _identity_row(imgsz).to(device)
                for tiles in (4, 1):
                    p = OnDevice(table, table, table, table, table, table, table, table, table, tiles)
                    warp_recolour(images, p, imgsz, hsv, wait=False)
                torch.cuda.synchronize(device)
            took = time.perf_counter() - start
            print(f"train: augmentation kernel compiled ahead in {took:.1f} s", file=sys.stderr, flush=True)
        except Exception as e:  # the first batch compiles instead, as it would have
            print(f"train: compiling the augmentation kernel ahead failed ({e})", file=sys.stderr, flush=True)

    _AHEAD[str(device)] = thread = threading.Thread(target=run, name="triton-compile-ahead", daemon=True)
    thread.start()


def _identity_row(imgsz: int) -> torch.Tensor:
    """A table row that reads only inside the image: identity warp, tile 0 the whole canvas, the others empty."""
    row = torch.zeros((1, sum(w for _, w in COLUMNS)), dtype=torch.float32)
    row[0, column("inverse") + 0] = row[0, column("inverse") + 4] = row[0, column("inverse") + 8] = 1.0
    row[0, column("rect") + 2] = row[0, column("rect") + 3] = float(imgsz)
    row[0, column("empty") + 1 : column("empty") + 4] = 1.0
    row[0, column("high") : column("high") + 8] = float(imgsz - 1)
    return row


def warp_recolour(images: torch.Tensor, p: OnDevice, imgsz: int, hsv: bool, wait: bool = True) -> torch.Tensor:
    """`gpu_augment.recolour(warp_images(images, p, imgsz), p.gains)` (or the warp alone without `hsv`), as one
    kernel: (B, 3, imgsz, imgsz) float32, 0-255. `images` are the letterboxed inputs (B, 3, S, S), any dtype."""
    ahead = _AHEAD.get(str(images.device)) if wait else None
    if ahead is not None and ahead.is_alive():
        start = time.perf_counter()
        ahead.join()  # its compile is this call's
        waited = time.perf_counter() - start
        print(f"train: the first batch waited {waited:.1f} s for the kernel's compile", file=sys.stderr, flush=True)
    b, big = images.shape[0], images.shape[-1]
    images = images.contiguous()
    table = p.table.contiguous()
    out = torch.empty((b, 3, imgsz, imgsz), dtype=torch.float32, device=images.device)
    grid = ((imgsz * imgsz + BLOCK - 1) // BLOCK, b)
    _warp_recolour[grid](
        images, out, table, big, imgsz, table.shape[1], FILL,
        TILES=p.tiles, HSV=hsv, BLOCK=BLOCK, **{f"C_{n.upper()}": column(n) for n, _ in COLUMNS},
    )  # fmt: skip
    return out


if triton is not None:

    @triton.jit
    def texel(plane, big, x0, x1, y0, y1, wx, wy, need):
        """One channel (`plane`, big x big) read bilinearly between columns x0, x1 and rows y0, y1."""
        top = (1 - wx) * tl.load(plane + y0 * big + x0, mask=need, other=0).to(tl.float32)
        top += wx * tl.load(plane + y0 * big + x1, mask=need, other=0).to(tl.float32)
        bottom = (1 - wx) * tl.load(plane + y1 * big + x0, mask=need, other=0).to(tl.float32)
        bottom += wx * tl.load(plane + y1 * big + x1, mask=need, other=0).to(tl.float32)
        return (1 - wy) * top + wy * bottom

    @triton.jit
    def bilinear(base, big, sx, sy, need):
        """The three channels at (sx, sy) of the image at `base` (3, big, big); `sx, sy` inside it, as grid_sample
        reads them (pixel centres at whole numbers)."""
        fx, fy = tl.floor(sx), tl.floor(sy)
        wx, wy = sx - fx, sy - fy
        x0, y0 = fx.to(tl.int32), fy.to(tl.int32)
        x1, y1 = tl.minimum(x0 + 1, big - 1), tl.minimum(y0 + 1, big - 1)
        plane = big * big
        red = texel(base, big, x0, x1, y0, y1, wx, wy, need)
        green = texel(base + plane, big, x0, x1, y0, y1, wx, wy, need)
        blue = texel(base + 2 * plane, big, x0, x1, y0, y1, wx, wy, need)
        return red, green, blue

    @triton.jit
    def floor_mod(x, m):
        """x mod m with the sign of m, as Python's and torch's `%`."""
        return x - m * tl.floor(x / m)

    @triton.jit
    def hsv_channel(h6, s, v, n):
        k = floor_mod(h6 + n, 6.0)
        return v - v * s * tl.minimum(tl.maximum(tl.minimum(k, 4 - k), 0.0), 1.0)

    @triton.jit
    def recoloured(red, green, blue, gains):
        """`gpu_augment.recolour` of one block of pixels (0-255), with the sample's HSV gains at `gains`."""
        r, g, bl = red / 255.0, green / 255.0, blue / 255.0
        maxc = tl.maximum(tl.maximum(r, g), bl)
        delta = maxc - tl.minimum(tl.minimum(r, g), bl)
        safe = tl.where(delta > 0, delta, 1.0)
        hue = tl.where(
            maxc == r, floor_mod((g - bl) / safe, 6.0), tl.where(maxc == g, (bl - r) / safe + 2, (r - g) / safe + 4)
        )
        hue = tl.where(delta > 0, hue / 6, 0.0)
        sat = tl.where(maxc > 0, delta / tl.where(maxc > 0, maxc, 1.0), 0.0)
        hue = floor_mod(hue + tl.load(gains), 1.0)
        sat = tl.minimum(tl.maximum(sat * (1 + tl.load(gains + 1)), 0.0), 1.0)
        val = tl.minimum(tl.maximum(maxc * (1 + tl.load(gains + 2)), 0.0), 1.0)
        return (
            hsv_channel(hue * 6, sat, val, 5.0) * 255.0,
            hsv_channel(hue * 6, sat, val, 3.0) * 255.0,
            hsv_channel(hue * 6, sat, val, 1.0) * 255.0,
        )

    @triton.jit
    def _warp_recolour(  # one kernel: what it computes stays in registers
        images, out, table, big, s, width, fill,
        TILES: tl.constexpr, HSV: tl.constexpr, BLOCK: tl.constexpr,  # noqa: N803
        C_INVERSE: tl.constexpr, C_ORIGIN: tl.constexpr, C_RECT: tl.constexpr, C_EMPTY: tl.constexpr,  # noqa: N803
        C_SOURCES: tl.constexpr, C_LOW: tl.constexpr, C_HIGH: tl.constexpr, C_GAINS: tl.constexpr,  # noqa: N803
    ):  # fmt: skip
        b = tl.program_id(1)
        n = s * s
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        live = offs < n
        xo = (offs % s).to(tl.float32)
        yo = (offs // s).to(tl.float32)
        row = table + b * width
        m = row + C_INVERSE
        w = tl.load(m + 6) * xo + tl.load(m + 7) * yo + tl.load(m + 8)
        cx = (tl.load(m + 0) * xo + tl.load(m + 1) * yo + tl.load(m + 2)) / w
        cy = (tl.load(m + 3) * xo + tl.load(m + 4) * yo + tl.load(m + 5)) / w
        red = tl.zeros([BLOCK], tl.float32)
        green = tl.zeros([BLOCK], tl.float32)
        blue = tl.zeros([BLOCK], tl.float32)
        cover = tl.zeros([BLOCK], tl.float32)
        for q in tl.static_range(TILES):
            x0, y0 = tl.load(row + C_RECT + 4 * q), tl.load(row + C_RECT + 4 * q + 1)
            x1, y1 = tl.load(row + C_RECT + 4 * q + 2), tl.load(row + C_RECT + 4 * q + 3)
            full = 1.0 - tl.load(row + C_EMPTY + q)  # an empty tile has no edge either
            share = tl.minimum(tl.maximum(cx - x0 + 1, 0.0), 1.0) * tl.minimum(tl.maximum(x1 - cx, 0.0), 1.0)
            share *= tl.minimum(tl.maximum(cy - y0 + 1, 0.0), 1.0) * tl.minimum(tl.maximum(y1 - cy, 0.0), 1.0)
            share *= full
            lx, ly = tl.load(row + C_LOW + 2 * q), tl.load(row + C_LOW + 2 * q + 1)
            hx, hy = tl.load(row + C_HIGH + 2 * q), tl.load(row + C_HIGH + 2 * q + 1)
            sx = tl.minimum(tl.maximum(cx - tl.load(row + C_ORIGIN + 2 * q) + lx, lx), hx)  # beyond: its edge
            sy = tl.minimum(tl.maximum(cy - tl.load(row + C_ORIGIN + 2 * q + 1) + ly, ly), hy)
            source = (tl.load(row + C_SOURCES + q) + 0.5).to(tl.int64)
            r, g, bl = bilinear(images + source * 3 * big * big, big, sx, sy, live & (share > 0))
            red += share * r
            green += share * g
            blue += share * bl
            cover += share
        grey = fill * tl.maximum(1.0 - cover, 0.0)
        red, green, blue = red + grey, green + grey, blue + grey
        if HSV:
            red, green, blue = recoloured(red, green, blue, row + C_GAINS)
        at = out + b.to(tl.int64) * 3 * n + offs
        tl.store(at, red, mask=live)
        tl.store(at + n, green, mask=live)
        tl.store(at + 2 * n, blue, mask=live)
