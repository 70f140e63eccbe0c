"""The device pipeline: decode, letterbox, normalise, forward, NMS, boxes back to image pixels, batched.

Why not `YOLO.predict`: it decodes, letterboxes and runs NMS image by image on the CPU, which leaves an H100
waiting (187 images/s vs ~6,000 for the bare forward). Here every step works on the whole batch on the device:
JPEGs go through the GPU decoder in one call, images of the same size are resized together, and NMS compares
the candidates of every (image, class) group of the batch at once, in padded blocks (nms.py). The geometry copies
Ultralytics' (LetterBox with auto=False and centred padding of 114; `scale_boxes`; best-class NMS with conf >
threshold, class-aware IoU, at most 30,000 candidates per image, max_det per image) so detections match
`predict(rect=False)` within fp16 rounding.

Each calling thread gets its own CUDA stream: the batcher runs two batches at once in two threads, so while one
waits for its results (a sync of its own stream only) the other's decode, forward and NMS keep the GPU busy.

Every Ultralytics task is served: the task comes from the weights (`YOLO(...).task`); segment, pose and obb
share the letterbox and the batched NMS (rotated Fast-NMS for obb) and add their own steps from tasks.py on the
device; classify resizes and centre-crops instead of letterboxing and keeps the top 5 classes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torchvision
from torch.nn import functional as F  # noqa: N812
from torchvision.io import ImageReadMode

from yolo_workloads.contract import TASKS, ServeConfig, Task
from yolo_workloads.serve import masks, nms, tasks
from yolo_workloads.serve.imagecheck import ImageError

log = logging.getLogger(__name__)
PAD_VALUE = 114.0
MAX_DET = 300


@dataclass
class Detections:
    """One image's detections, in original image pixels, best score first; the task's extras where it has them."""

    boxes: np.ndarray  # float32 [K, 4] xyxy (obb: the box around the rotated one)
    scores: np.ndarray  # float32 [K]
    classes: np.ndarray  # int32 [K]
    masks: list[np.ndarray] | None = None  # segment: per detection, COCO uncompressed RLE counts over `size`
    keypoints: np.ndarray | None = None  # pose: float32 [K, nk, ndim] (x, y[, visibility])
    obb: np.ndarray | None = None  # obb: float32 [K, 5] (cx, cy, w, h, angle in radians)
    size: tuple[int, int] = (0, 0)  # (height, width) of the image: the frame of the masks


@dataclass
class Classification:
    """One image's best classes (classify), best first."""

    classes: np.ndarray  # int32 [k]
    scores: np.ndarray  # float32 [k], softmax probabilities


class TaskMismatch(ValueError):
    """The weights are for another task than the one the server was asked to run."""


@dataclass(frozen=True)
class EncodedImage:
    data: bytes
    format: str  # "jpeg" | "png"
    decoded_bytes: int = 0  # from the header (imagecheck.ImageInfo.decoded_bytes); 0 when not counted
    channels: int = 3  # colour components in the header: 4 is a CMYK/YCCK JPEG


Item = EncodedImage | torch.Tensor  # encoded bytes, or an RGB uint8 CHW tensor
Outcome = Detections | Classification | ImageError
# Pixels converted to float at once by `letterbox` (12 bytes each): bounds the working set of many images.
LETTERBOX_CHUNK_PIXELS = 16 * 1024 * 1024
# A host image larger than this is resized in two passes over bands of rows (`resize_banded`), so its float
# working copy is a band and a narrow strip instead of the whole image (432 MB for 6000 x 6000).
BANDED_RESIZE_PIXELS = 4 * 1024 * 1024
BAND_PIXELS = 1024 * 1024
_U16_MAX = 65535
CMYK = 4


def resize_banded(img: torch.Tensor, nh: int, nw: int) -> torch.Tensor:
    """Bilinear resize of a uint8 [3, H, W] image to float [1, 3, nh, nw], as `F.interpolate` of the whole image
    but without its float copy: first the width over bands of rows (height unchanged, so rows do not mix), then
    the height over the narrow result. The same weights, summed in another order: equal to the one-pass resize
    within float rounding (a few 1e-5), so after rounding to 8 bits a pixel can differ by one level only where
    the one-pass value lies within that of .5 (tests/workloads/test_serve_properties.py checks the bound)."""
    _, h, w = img.shape
    rows = max(1, BAND_PIXELS // w)
    narrow = torch.empty((1, 3, h, nw), dtype=torch.float32, device=img.device)
    for top in range(0, h, rows):
        band = img[None, :, top : top + rows].float()
        narrow[:, :, top : top + rows] = F.interpolate(
            band, size=(band.shape[2], nw), mode="bilinear", align_corners=False
        )
    return F.interpolate(narrow, size=(nh, nw), mode="bilinear", align_corners=False)


def item_bytes(item: Item) -> int:
    """Decoded bytes an item takes in a batch: what the memory budgets count."""
    if isinstance(item, torch.Tensor):
        return item.numel() * item.element_size()
    return item.decoded_bytes


def to_rgb8(img: torch.Tensor) -> torch.Tensor:
    """A decoded image as 3-channel uint8, or ImageError: 16-bit samples are scaled (65535 -> 255, rounded, as
    OpenCV's imread does), anything else that is not [3, H, W] uint8 is refused rather than misread."""
    if img.dtype == torch.uint16 and img.dim() == 3:
        out = torch.empty(img.shape, dtype=torch.uint8, device=img.device)
        for c in range(img.shape[0]):  # one channel at a time: the int32 working copy stays small
            wide = img[c].to(torch.int32)
            out[c] = wide.mul_(255).add_(_U16_MAX // 2).floor_divide_(_U16_MAX)
        img = out
    if img.dtype != torch.uint8 or img.dim() != 3 or img.shape[0] != 3:
        raise ImageError(f"image decoded to {img.dtype} {tuple(img.shape)}, not 8-bit RGB", status=422)
    return img


def ensure_offline() -> None:
    """Keep Ultralytics from reaching the network (the shared helper: env, settings, fonts, AMP check)."""
    from yolo_workloads import offline

    offline.apply()


def pick_device(requested: str | None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def model_task(yolo: Any, ref: str, expected: Task | None) -> Task:
    """The task the loaded weights (or architecture) are for; TaskMismatch when it is not `expected`."""
    name = str(getattr(yolo, "task", None) or "detect")
    task = next((t for t in TASKS if t == name), None)
    if task is None:
        raise TaskMismatch(f"model {ref} is for task {name!r}, which this server does not run ({', '.join(TASKS)})")
    if expected is not None and task != expected:
        raise TaskMismatch(f"model {ref} is for task {task!r}, but task {expected!r} was asked for")
    return task


def read_task(ref: str, expected: Task | None = None) -> Task:
    """The task of a weights file or architecture YAML without preparing it for serving (the CLI's check before
    the server opens its socket); TaskMismatch when it is not `expected`."""
    ensure_offline()
    from ultralytics import YOLO  # type: ignore[attr-defined]

    return model_task(YOLO(ref), ref, expected)


def load_model(
    ref: str, device: torch.device, half: bool, expected: Task | None = None
) -> tuple[torch.nn.Module, dict[int, str], int, Task]:
    """Ultralytics model, fused conv+bn, eval, fp16 on GPU, channels-last. Returns (module, names, stride, task)."""
    ensure_offline()
    from ultralytics import YOLO  # type: ignore[attr-defined]

    yolo = YOLO(ref)  # the task from the checkpoint (or guessed from the YAML): never forced
    task = model_task(yolo, ref, expected)
    model: Any = yolo.model
    model = model.fuse(verbose=False) if "verbose" in model.fuse.__code__.co_varnames else model.fuse()
    model = model.to(device).eval()
    if half:
        model = model.half()
    model = model.to(memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(False)
    names = {int(k): str(v) for k, v in dict(model.names).items()}
    stride = int(max(model.stride)) if hasattr(model, "stride") else 32
    return model, names, stride, task


class _AnyBatch:
    """A BCHW shape key equal to any shape with the same CHW (the anchor grid does not depend on the batch)."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, shape: torch.Size) -> None:
        self.chw = tuple(shape[1:])

    def __ne__(self, other: object) -> bool:
        return not isinstance(other, (tuple, torch.Size)) or tuple(other[1:]) != self.chw

    def __eq__(self, other: object) -> bool:
        return not self.__ne__(other)


class Detector:
    """Loaded model plus the batched pre/post-processing around it."""

    def __init__(self, cfg: ServeConfig, task: Task | None = None) -> None:
        """`task`: the task the server must run; the weights' own task must be the same (TaskMismatch)."""
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        self.half = cfg.half and self.device.type == "cuda"
        self.dtype = torch.float16 if self.half else torch.float32
        self.imgsz = cfg.imgsz
        self.conf = cfg.conf
        self.iou = cfg.iou
        self.max_det = MAX_DET
        t0 = time.perf_counter()
        self.model, self.names, self.stride, self.task = load_model(cfg.model.ref, self.device, self.half, task)
        self.nc = len(self.names)
        layers: Any = getattr(self.model, "model", None)
        nk, nd = getattr(layers[-1], "kpt_shape", (0, 0)) if layers is not None else (0, 0)
        self.kpt_shape = (int(nk), int(nd))
        self.top_k = tasks.TOP_K
        if self.imgsz % self.stride:
            raise ValueError(f"imgsz {self.imgsz} must be a multiple of the model stride {self.stride}")
        self.gpu_decode = self.device.type == "cuda"
        self._local = threading.local()  # per-thread CUDA stream
        self._pin_anchors()
        log.info("model %s loaded on %s in %.1fs", cfg.model.ref, self.device, time.perf_counter() - t0)

    def _pin_anchors(self) -> None:
        """Compute the head's anchor grid once, before any side stream exists, and keep it for every batch size.

        Ultralytics' Detect head recomputes (and replaces) its anchors whenever the input's BCHW shape changes,
        batch size included. With two threads on two CUDA streams that would free a tensor one stream may still
        read; letterboxed batches are always imgsz x imgsz, so the grid never changes and one copy serves all."""
        layers: Any = getattr(self.model, "model", None)
        head = layers[-1] if layers is not None else None
        if head is None or getattr(head, "dynamic", True) or not hasattr(head, "shape"):
            return
        with torch.inference_mode():
            self.forward(torch.zeros(1, 3, self.imgsz, self.imgsz, dtype=self.dtype, device=self.device))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        if head.shape is not None:
            head.shape = _AnyBatch(head.shape)

    # -- decode ------------------------------------------------------------------------------------------------
    def decode(self, items: list[Item]) -> list[torch.Tensor | ImageError]:
        """RGB uint8 CHW tensors on the device, JPEGs batched through the GPU decoder when there is one."""
        out: list[torch.Tensor | ImageError | None] = [None] * len(items)
        jpegs: dict[int, EncodedImage] = {}
        for i, item in enumerate(items):
            if isinstance(item, torch.Tensor):
                out[i] = self._checked(item)
            elif item.format == "jpeg" and self.gpu_decode and item.channels != CMYK:  # CMYK: libjpeg's conversion
                jpegs[i] = item
            else:
                out[i] = self._decode_cpu(item)
        if jpegs:
            datas = [torch.frombuffer(bytearray(item.data), dtype=torch.uint8) for item in jpegs.values()]
            try:
                decoded = torchvision.io.decode_jpeg(datas, mode=ImageReadMode.RGB, device=self.device)
                for i, img in zip(jpegs, decoded, strict=True):
                    out[i] = self._checked(img)
            except RuntimeError:
                # One bad image fails the whole batched call: find it by decoding one by one (GPU, then CPU).
                for (i, item), data in zip(jpegs.items(), datas, strict=True):
                    try:
                        out[i] = self._checked(
                            torchvision.io.decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device)
                        )
                    except RuntimeError:
                        out[i] = self._decode_cpu(item)
        return [o if o is not None else ImageError("image could not be decoded") for o in out]

    def _checked(self, img: torch.Tensor) -> torch.Tensor | ImageError:
        """8-bit RGB on the device, or this image's own error (never an exception that fails the batch)."""
        try:
            return to_rgb8(img).to(self.device, non_blocking=True)
        except ImageError as exc:
            return exc

    def _decode_cpu(self, item: EncodedImage) -> torch.Tensor | ImageError:
        try:
            data = torch.frombuffer(bytearray(item.data), dtype=torch.uint8)
            img: torch.Tensor = torchvision.io.decode_image(data, mode=ImageReadMode.RGB)
        except (RuntimeError, ValueError) as exc:
            return ImageError(f"corrupt {item.format.upper()}: {str(exc).splitlines()[0][:160]}")
        return self._checked(img)

    # -- letterbox ---------------------------------------------------------------------------------------------
    def geometry(self, h: int, w: int) -> tuple[int, int, int, int]:
        """(new_h, new_w, top, left) exactly as Ultralytics LetterBox(auto=False, center=True)."""
        s = self.imgsz
        r = min(s / h, s / w)
        nw, nh = max(round(w * r), 1), max(round(h * r), 1)
        dw, dh = (s - nw) / 2, (s - nh) / 2
        return nh, nw, round(dh - 0.1), round(dw - 0.1)

    def letterbox(self, images: list[torch.Tensor]) -> torch.Tensor:
        """Batch [B,3,S,S] normalised to 0-1 in the model dtype, channels-last; same-size images resized together."""
        s = self.imgsz
        batch = torch.full((len(images), 3, s, s), PAD_VALUE / 255.0, dtype=self.dtype, device=self.device)
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, img in enumerate(images):
            groups[(int(img.shape[1]), int(img.shape[2]))].append(i)
        for (h, w), group in groups.items():
            step = max(1, LETTERBOX_CHUNK_PIXELS // (h * w)) if h * w <= BANDED_RESIZE_PIXELS else 1
            for lo in range(0, len(group), step):
                self._letterbox_group(batch, images, group[lo : lo + step], h, w)
        return batch.contiguous(memory_format=torch.channels_last)

    def _letterbox_group(self, batch: torch.Tensor, images: list[torch.Tensor], idx: list[int], h: int, w: int) -> None:
        """Resize images `idx` (all h x w) into their slots of `batch`; one float copy of just these images."""
        nh, nw, top, left = self.geometry(h, w)
        if len(idx) == 1 and h * w > BANDED_RESIZE_PIXELS and images[idx[0]].device.type == "cpu":
            x = resize_banded(images[idx[0]], nh, nw).round_().clamp_(0, 255)
        else:
            x = self._resize(torch.stack([images[i] for i in idx]).float(), h, w, nh, nw)
        x = (x / 255.0).to(self.dtype)
        if idx[-1] - idx[0] == len(idx) - 1:  # consecutive (always when all images share a size): no index copy
            batch[idx[0] : idx[-1] + 1, :, top : top + nh, left : left + nw] = x
        else:
            index = torch.tensor(idx).pin_memory() if self.device.type == "cuda" else torch.tensor(idx)
            batch[index.to(self.device, non_blocking=True), :, top : top + nh, left : left + nw] = x

    @staticmethod
    def _resize(x: torch.Tensor, h: int, w: int, nh: int, nw: int) -> torch.Tensor:
        if (nh, nw) != (h, w):
            # cv2.INTER_LINEAR == bilinear, half-pixel centres, no antialias; round like cv2's uint8 output.
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False).round_().clamp_(0, 255)
        return x

    # -- model + NMS -------------------------------------------------------------------------------------------
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.forward_all(batch)[0]

    def forward_all(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(predictions [B, 4+nc+extra, A] or classify's probabilities [B, nc], segment's prototypes or None)."""
        out = self.model(batch)
        first = out[0] if isinstance(out, (tuple, list)) else out
        if isinstance(first, (tuple, list)):  # segment: ((predictions, prototypes), raw)
            return first[0], first[1]
        return first, None

    def nms(self, pred: torch.Tensor, extra: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Batched NMS. Returns (rows [M,6+extra] xyxy,score,cls[,extra channels] in letterbox pixels, image index
        [M]), per image best first. `extra`: the channels after the class scores (mask coefficients, keypoints).

        Greedy NMS of every (image, class) group of the batch at once (nms.greedy_nms: padded blocks on the device,
        not torchvision's one-thread-block pass), then the first max_det of each image.
        """
        b_size, ch, _ = pred.shape
        nc = ch - 4 - extra
        p = pred.transpose(1, 2)  # [B, A, 4+nc+extra]
        scores, cls = p[..., 4 : 4 + nc].max(-1)
        b_idx, a_idx = (scores > self.conf).nonzero(as_tuple=True)  # row-major: sorted by image
        xywh = p[b_idx, a_idx, :4].float()
        boxes = torch.cat((xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2), 1)
        sc = scores[b_idx, a_idx].float()
        cl = cls[b_idx, a_idx]
        keep = nms.greedy_nms(boxes, sc, b_idx * nc + cl, self.iou)
        kb = b_idx[keep]
        order = torch.sort(kb, stable=True).indices  # group by image, keeping score order inside
        keep, kb = self._cap_per_image(keep[order], kb[order], b_size)
        rows = torch.cat((boxes[keep], sc[keep, None], cl[keep, None].float()), 1)
        if extra:
            rows = torch.cat((rows, p[b_idx[keep], a_idx[keep], 4 + nc :].float()), 1)
        return rows, kb

    def nms_rotated(self, pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """OBB's NMS: (rows [M,7] cx,cy,w,h,score,cls,angle in letterbox pixels, image index [M]), per image best
        first and at most max_det each. All images of the batch in one Fast-NMS call (tasks.rotated_fast_nms), groups
        keeping images and classes apart."""
        nc = pred.shape[1] - 5
        p = pred.transpose(1, 2)  # [B, A, 4+nc+1]
        scores, cls = p[..., 4 : 4 + nc].max(-1)
        b_idx, a_idx = (scores > self.conf).nonzero(as_tuple=True)
        cand = p[b_idx, a_idx].float()
        rboxes = torch.cat((cand[:, :4], cand[:, -1:]), 1)
        sc, cl = scores[b_idx, a_idx].float(), cls[b_idx, a_idx]
        keep = tasks.rotated_fast_nms(rboxes, sc, b_idx * nc + cl, self.iou)
        kb = b_idx[keep]
        order = torch.sort(kb, stable=True).indices
        keep, kb = keep[order], kb[order]
        keep, kb = self._cap_per_image(keep, kb, pred.shape[0])
        rows = torch.cat((rboxes[keep, :4], sc[keep, None], cl[keep, None].float(), rboxes[keep, 4:]), 1)
        return rows, kb

    def _cap_per_image(self, keep: torch.Tensor, kb: torch.Tensor, b_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first max_det of each image's kept rows (grouped by image, best first inside)."""
        sel = nms.rank_within(kb, b_size) < self.max_det
        return keep[sel], kb[sel]

    def _stream(self) -> contextlib.AbstractContextManager[Any]:
        """This thread's CUDA stream as a context (a no-op on the CPU)."""
        if self.device.type != "cuda":
            return contextlib.nullcontext()
        stream = getattr(self._local, "stream", None)
        if stream is None:
            stream = self._local.stream = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
        return torch.cuda.stream(stream)

    @torch.inference_mode()
    def run(self, items: list[Item]) -> list[Outcome]:
        """Detections for each item (or the ImageError of that item)."""
        with self._stream():
            return self._run(items)

    def _run(self, items: list[Item]) -> list[Outcome]:
        results: list[Outcome | None] = [None] * len(items)
        decoded = self.decode(items)
        ok = [i for i, d in enumerate(decoded) if isinstance(d, torch.Tensor)]
        for i, d in enumerate(decoded):
            if isinstance(d, ImageError):
                results[i] = d
        if ok:
            images = [d for d in decoded if isinstance(d, torch.Tensor)]
            outs: list[Outcome] = [*(self._classify(images) if self.task == "classify" else self._detect(images))]
            for i, out in zip(ok, outs, strict=True):
                results[i] = out
        return [r if r is not None else ImageError("internal: no result") for r in results]

    def _detect(self, images: list[torch.Tensor]) -> list[Detections]:
        """Letterbox, forward, NMS and the task's own steps for a batch of decoded images."""
        pred, protos = self.forward_all(self.letterbox(images))
        rles: list[list[np.ndarray]] | None = None
        if self.task == "obb":
            rows, kb = self.nms_rotated(pred)
        else:
            rows, kb = self.nms(pred, pred.shape[1] - 4 - self.nc)
        if self.task == "segment":
            assert protos is not None
            rows, kb, rles = self._segment(rows, kb, protos, images)
        host = torch.cat((rows, kb[:, None].float()), 1).cpu().numpy()  # the one copy of the results
        # Back to original pixels as Ultralytics' scale_boxes does, in float32 on the host (a few thousand rows):
        # no per-batch geometry tensor has to travel to the device.
        kbi = host[:, -1].astype(np.int64)
        gi = np.array([self._unletterbox(im) for im in images], dtype=np.float32).reshape(-1, 6)[kbi]
        obb = tasks.rboxes_to_image(host[:, [0, 1, 2, 3, 6]], gi) if self.task == "obb" else None
        boxes = tasks.enclosing_boxes(obb) if obb is not None else self._boxes_to_image(host[:, :4], gi)
        kpts = None
        if self.task == "pose":
            nk, nd = self.kpt_shape
            kpts = tasks.keypoints_to_image(host[:, 6 : 6 + nk * nd].reshape(-1, nk, nd), gi)
        out: list[Detections] = []
        start = 0
        for j, n in enumerate(np.bincount(kbi, minlength=len(images)).tolist()):
            sl = slice(start, start + n)
            out.append(
                Detections(
                    boxes=np.ascontiguousarray(boxes[sl], dtype=np.float32),
                    scores=np.ascontiguousarray(host[sl, 4], dtype=np.float32),
                    classes=host[sl, 5].astype(np.int32),
                    masks=rles[j] if rles is not None else None,
                    keypoints=kpts[sl] if kpts is not None else None,
                    obb=obb[sl] if obb is not None else None,
                    size=(int(images[j].shape[1]), int(images[j].shape[2])),
                )
            )
            start += n
        return out

    @staticmethod
    def _boxes_to_image(xyxy: np.ndarray, gi: np.ndarray) -> np.ndarray:
        """xyxy [M, 4] in letterbox pixels to image pixels, clipped (`gi` [M, 6]: the letterbox inverse)."""
        xy = (xyxy.reshape(-1, 2, 2) - gi[:, None, 0:2]) / gi[:, None, 2:4]
        out: np.ndarray = np.minimum(np.maximum(xy, np.float32(0)), gi[:, None, 4:6]).reshape(-1, 4)
        return out

    def _segment(
        self, rows: torch.Tensor, kb: torch.Tensor, protos: torch.Tensor, images: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, list[list[np.ndarray]]]:
        """Masks of the batch's detections (masks.py: only each box's columns), made and run-length encoded in
        groups of detections (one host sync per group, whatever the number of images in it); detections whose
        letterbox mask is empty are dropped, as Ultralytics drops them. Returns the kept rows, their image index
        and each image's RLE counts."""
        counts = torch.bincount(kb, minlength=len(images)).tolist()
        sizes = [(int(im.shape[1]), int(im.shape[2])) for im in images]
        owner = np.repeat(np.arange(len(images)), counts)  # the image of each detection (rows are by image)
        keeps: list[torch.Tensor] = []
        rles: list[np.ndarray] = []
        for lo, hi in self._mask_groups([sizes[j] for j in owner]):
            first, last = int(owner[lo]), int(owner[hi - 1])  # the group's images (its logits only: bounded memory)
            spanned = np.bincount(owner[lo:hi] - first, minlength=last - first + 1).tolist()
            logits = tasks.mask_logits(protos[first : last + 1], rows[lo:hi, 6:], kb[lo:hi] - first, spanned)
            strips = masks.mask_strips(logits, rows[lo:hi, :4], self.imgsz)
            keep, group = masks.group_masks(strips, [sizes[j] for j in owner[lo:hi]], self.imgsz, self.geometry)
            keeps.append(keep)
            rles += group
        keep = torch.cat(keeps) if keeps else torch.zeros(0, dtype=torch.bool, device=rows.device)
        kept = keep.cpu().numpy()
        starts = np.cumsum([0, *counts]).tolist()
        per_image = [
            [rle for rle, k in zip(rles[starts[j] : starts[j + 1]], kept[starts[j] : starts[j + 1]], strict=True) if k]
            for j in range(len(images))
        ]
        return rows[keep], kb[keep], per_image

    def _mask_groups(self, sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Consecutive ranges of detections whose masks (letterbox and image-sized, at most) fit
        tasks.RLE_GROUP_PIXELS together (each range holds at least one detection)."""
        groups: list[tuple[int, int]] = []
        lo, pixels = 0, 0
        for i, (h, w) in enumerate(sizes):
            cost = self.imgsz * self.imgsz + h * w
            if i > lo and pixels + cost > tasks.RLE_GROUP_PIXELS:
                groups.append((lo, i))
                lo, pixels = i, 0
            pixels += cost
        if lo < len(sizes):
            groups.append((lo, len(sizes)))
        return groups

    def _classify(self, images: list[torch.Tensor]) -> list[Classification]:
        """Resize and centre-crop (not letterbox) as Ultralytics' classify predictor, forward, top k."""
        batch = torch.empty((len(images), 3, self.imgsz, self.imgsz), dtype=self.dtype, device=self.device)
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, img in enumerate(images):
            groups[(int(img.shape[1]), int(img.shape[2]))].append(i)
        for idx in groups.values():
            for lo in range(0, len(idx), 64):  # bounds the float copy of large images
                part = idx[lo : lo + 64]
                x = tasks.resize_crop(torch.stack([images[i] for i in part]), self.imgsz)
                batch[torch.tensor(part, device=self.device)] = (x / 255.0).to(self.dtype)
        probs, _ = self.forward_all(batch.contiguous(memory_format=torch.channels_last))
        scores, classes = tasks.top_k(probs, self.top_k)
        sc, cl = scores.cpu().numpy(), classes.cpu().numpy().astype(np.int32)
        return [Classification(classes=cl[i], scores=sc[i]) for i in range(len(images))]

    def _unletterbox(self, img: torch.Tensor) -> list[float]:
        h0, w0 = int(img.shape[1]), int(img.shape[2])
        nh, nw, _, _ = self.geometry(h0, w0)
        pad_x = round((self.imgsz - nw) / 2 - 0.1)
        pad_y = round((self.imgsz - nh) / 2 - 0.1)
        return [pad_x, pad_y, nw / w0, nh / h0, w0, h0]

    def warmup(self, batch_sizes: list[int]) -> None:
        """Run each batch size once so kernels are selected and memory is allocated before `ready`."""
        for b in batch_sizes:
            img = torch.randint(0, 255, (3, self.imgsz * 3 // 4, self.imgsz), dtype=torch.uint8)
            self.run([img] * b)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
