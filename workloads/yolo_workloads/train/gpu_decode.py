"""The training set's JPEG images decoded on the GPU (nvJPEG through torchvision), for the GPU augmentation path.

Why: with `augmentation: gpu` the workers no longer mosaic, warp or recolour, but where the training set is not cached
in RAM (too large for it, or `cache` off) they still decode every image with OpenCV on the CPUs, the largest share of
what is left of the data path. Data-centre GPUs (A100, H100, H200, L4, B200) carry hardware JPEG decoders that
torchvision reaches through nvJPEG. Here a worker reads each JPEG's bytes and its header only (the size, so that the
letterbox geometry and the labels are the loader's own), and the training process decodes the whole batch at once on
the GPU (one batch ahead, in a thread: `load_ahead`), then resizes each image as Ultralytics' `load_image` does
(long side to imgsz, bilinear, no antialias) into the top-left corner of an imgsz x imgsz slot, as `device_images`
keeps them (the augmentation reads inside the image only, so the slot's padding is never read).

Which images: baseline JPEGs, colour or greyscale, without an EXIF rotation and without an `.npy` cache beside them.
Any other (PNG, progressive or CMYK JPEG, a rotated photo) is decoded by its worker as before and travels as the
loader's letterboxed pixels in the same batch, so a mixed data set trains unchanged.
"""

from __future__ import annotations

import functools
import io
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional

from yolo_workloads.train import pixel_free

ENCODED = "jpeg_bytes"
"""A batch's key: each sample's JPEG file (uint8, empty when its worker decoded it)."""
LOADED = "loader_pixels"
"""A batch's key: each sample's letterboxed pixels from its worker (CHW RGB uint8, empty when sent encoded)."""

HARDWARE_DECODERS = ((8, 0), (8, 7), (8, 9))
"""Compute capabilities below 9.0 whose data-centre parts carry hardware JPEG decoders (A100/A30, Orin, L4/L40);
every later generation (H100, H200, B200) does. Elsewhere nvJPEG decodes on the host in the training process, one
image after another: slower than the workers."""

_ORIENTATION = 0x0112
JPEG_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif"})
"""The files read as bytes first; their header then says whether the GPU decodes them."""


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The (height, width) of a JPEG the GPU decodes as OpenCV would (baseline, RGB or greyscale, no EXIF rotation);
    None for any other image."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "JPEG" or image.mode not in ("RGB", "L") or image.info.get("progressive"):
                return None
            if image.getexif().get(_ORIENTATION, 1) != 1:
                return None
            width, height = image.size
    except Exception:  # unreadable here: the worker's own reader says why
        return None
    return height, width


def resized(hw0: tuple[int, int], imgsz: int) -> tuple[int, int]:
    """Ultralytics' `load_image` size for a training image: the long side to imgsz, each side rounded up."""
    h0, w0 = hw0
    r = imgsz / max(h0, w0)
    if r == 1:
        return h0, w0
    return min(math.ceil(h0 * r), imgsz), min(math.ceil(w0 * r), imgsz)


class EncodedReads:
    """Installed on a training data set: its `load_image` (JPEGs: bytes and header only) and a last transform that
    moves the bytes (or the worker's own pixels) into the sample under `ENCODED` / `LOADED`."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.pending: dict[str, torch.Tensor] = {}  # per worker process: read by load_image, sent by the transform

    def load_image(
        self, i: int, rect_mode: bool = True, resize_short: bool = False
    ) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
        d = self.dataset
        file = str(d.im_files[i])
        jpeg = Path(file).suffix.lower() in JPEG_SUFFIXES  # others are never read twice
        if jpeg and d.ims[i] is None and rect_mode and not resize_short and not Path(d.npy_files[i]).exists():
            data = Path(file).read_bytes()
            hw0 = jpeg_size(data)
            if hw0 is not None:
                imgsz = max(d.imgsz) if isinstance(d.imgsz, (list, tuple)) else int(d.imgsz)
                hw = resized(hw0, imgsz)
                self.pending[file] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
                # a stand-in of the resized size: the letterbox computes the loader's own geometry from it
                return pixel_free.stand_in(*hw), hw0, hw
        loaded: tuple[np.ndarray, tuple[int, int], tuple[int, int]] = type(d).load_image(d, i, rect_mode, resize_short)
        return loaded

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        encoded = self.pending.pop(str(labels["im_file"]), None)
        empty = torch.empty(0, dtype=torch.uint8)
        labels[ENCODED] = empty if encoded is None else encoded
        labels[LOADED] = labels["img"] if encoded is None else empty
        labels["img"] = torch.empty((3, 0, 0), dtype=torch.uint8)  # one shape for every sample: collate stacks it
        return labels


def why_not(dataset: Any, device: torch.device) -> str | None:
    """Why this training set's JPEGs are not decoded on `device` (None: they are)."""
    if getattr(dataset, "cache", None) in ("ram", "disk"):
        return f"the training set is cached ({dataset.cache}): its images are decoded once already"
    if int(getattr(dataset, "channels", 3)) != 3:
        return f"the images are read with {dataset.channels} channels"
    if device.type != "cuda":
        return "training is not on a GPU"
    capability = torch.cuda.get_device_capability(device)
    if capability[0] < 9 and capability not in HARDWARE_DECODERS:
        name = torch.cuda.get_device_name(device)
        return f"the GPU ({name}, compute capability {capability[0]}.{capability[1]}) has no hardware JPEG decoder"
    return _probe(device)


def _probe(device: torch.device) -> str | None:
    """Decode one small JPEG on the device: None when torchvision can, else its error."""
    import cv2
    from torchvision.io import ImageReadMode, decode_jpeg

    _, encoded = cv2.imencode(".jpg", np.full((16, 16, 3), 114, dtype=np.uint8))
    try:
        decode_jpeg([torch.from_numpy(encoded.reshape(-1))], mode=ImageReadMode.RGB, device=device)
    except Exception as e:  # any failure: the workers decode, and the log says why
        return f"torchvision cannot decode JPEG on the GPU: {e}"
    return None


def install(dataset: Any) -> None:
    """The data set's JPEGs read as bytes from now on (its RAM cache, if any, is left alone)."""
    reads = EncodedReads(dataset)
    dataset.load_image = reads.load_image
    dataset.transforms.append(reads)
    pixel_free.install(dataset)


def say(why: str | None) -> None:
    """One line on stderr: where the training images are decoded."""
    where = "on the GPU (nvJPEG)" if why is None else f"by the loader's workers: {why}"
    print(f"train: training JPEGs decoded {where}", file=sys.stderr, flush=True)


def batch_images(batch: dict[str, Any], sizes: np.ndarray, pads: np.ndarray, imgsz: int, device: torch.device) -> (
    tuple[torch.Tensor, np.ndarray]
):  # fmt: skip
    """A batch's images (B, 3, S, S, uint8 RGB on `device`) and each one's padding (left, top): JPEGs decoded and
    resized at their slot's top-left corner (no padding), the others as their worker letterboxed them (`pads`)."""
    encoded, loaded = batch[ENCODED], batch[LOADED]
    images = torch.zeros((len(encoded), 3, imgsz, imgsz), dtype=torch.uint8, device=device)
    pixel_pads = pads.copy()
    jpegs = [i for i, e in enumerate(encoded) if e.numel()]
    if jpegs:
        files = [str(batch["im_file"][i]) for i in jpegs]
        _place(images, jpegs, decode_each([encoded[i] for i in jpegs], files, device), sizes)
        pixel_pads[jpegs] = 0.0
    others = sorted(set(range(len(encoded))) - set(jpegs))
    if others:
        images[_rows(others, device)] = _queued(torch.stack([loaded[i] for i in others]), device)
    return images, pixel_pads


def forget(batch: dict[str, Any]) -> None:
    """The batch's files and loader pixels dropped once its images are made."""
    for key in (ENCODED, LOADED):
        batch.pop(key, None)


def placement(batch: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Each image's resized (h, w) and its letterbox padding (left, top), from the loader's `ori_shape` and
    `ratio_pad` (its `resized_shape` is the letterboxed square's by then)."""
    shapes = zip(batch["ori_shape"], batch["ratio_pad"], strict=True)
    sizes = [(round(h * rh), round(w * rw)) for (h, w), ((rh, rw), _) in shapes]
    pads = [tuple(pad) for _, pad in batch["ratio_pad"]]
    return np.array(sizes, dtype=np.int64), np.array(pads, dtype=np.float64)


def decode_each(encoded: list[torch.Tensor], files: list[str], device: torch.device) -> list[torch.Tensor]:
    """`decode`, and where the decoder refuses the batch (an image nvJPEG cannot read though OpenCV can: 12-bit or
    arithmetic-coded, a damaged stream), each image alone; one it refuses alone is decoded by OpenCV on the host,
    said on stderr. An image OpenCV cannot read either fails the training, its file named, as in Ultralytics."""
    try:
        return decode(encoded, device)
    except RuntimeError:
        return [_decode_one(e, f, device) for e, f in zip(encoded, files, strict=True)]


def _decode_one(encoded: torch.Tensor, file: str, device: torch.device) -> torch.Tensor:
    import cv2

    try:
        return decode([encoded], device)[0]
    except RuntimeError as refused:
        image = cv2.imdecode(encoded.numpy(), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{file}: not a readable image ({refused})") from refused
        print(f"train: {file} decoded by OpenCV: the GPU's decoder refused it ({refused})", file=sys.stderr, flush=True)
        return torch.from_numpy(np.ascontiguousarray(image[..., ::-1].transpose(2, 0, 1))).to(device)


def decode(encoded: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """JPEG files decoded on `device` (CHW RGB uint8), in one batch.

    torchvision's decoder writes on a stream of its own into memory allocated on the current stream, without
    waiting for that stream's queued work; so the outputs are allocated on a side stream that nothing else uses,
    the training stream waits for it (no host wait), and they are kept from reuse until the training stream is done
    with them."""
    from torchvision.io import ImageReadMode, decode_jpeg

    if device.type != "cuda":
        return list(decode_jpeg(encoded, mode=ImageReadMode.RGB))
    side, main = side_stream(device), torch.cuda.current_stream(device)
    with torch.cuda.stream(side):
        decoded = list(decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device))
    main.wait_stream(side)
    for image in decoded:
        image.record_stream(main)
    return decoded


@functools.cache
def side_stream(device: torch.device) -> torch.cuda.Stream:
    return torch.cuda.Stream(device)  # type: ignore[no-untyped-call]


def _rows(rows: list[int], device: torch.device) -> torch.Tensor:
    return _queued(torch.as_tensor(rows, dtype=torch.long), device)


def _queued(host: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`host` on `device` by a queued copy (pinned first on a GPU): nothing waits for the GPU."""
    if device.type == "cuda":
        host = host.pin_memory()
    return host.to(device, non_blocking=True)


def _place(images: torch.Tensor, rows: list[int], decoded: list[torch.Tensor], sizes: np.ndarray) -> None:
    """Each decoded image resized to its size in `sizes` and written at its slot's top-left, one resize per group of
    images of one source and one target size."""
    groups: dict[tuple[int, int, int, int], list[int]] = {}
    for k, row in enumerate(rows):
        h, w = (int(v) for v in sizes[row])
        groups.setdefault((*decoded[k].shape[1:], h, w), []).append(k)
    for (h0, w0, h, w), members in groups.items():
        stack = torch.stack([decoded[k] for k in members])
        if (h0, w0) != (h, w):  # as cv2.resize INTER_LINEAR: half-pixel centres, no antialias
            stack = functional.interpolate(stack.float(), size=(h, w), mode="bilinear", align_corners=False)
            stack = stack.round_().clamp_(0, 255).to(torch.uint8)
        images[_rows([rows[k] for k in members], images.device), :, :h, :w] = stack
