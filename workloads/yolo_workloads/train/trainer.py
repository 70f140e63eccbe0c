"""The Ultralytics trainers our pods run, one per task: offline, with checkpoints that survive a kill.

Importing this module makes Ultralytics offline. That matters under DDP: Ultralytics starts each rank as a new
Python process that re-imports the trainer's class by module name, so the patches in `offline.apply()` reach the
ranks through this import rather than through the parent's memory. For the same reason each task's trainer is a
class defined at module level here (DDP finds it by module and class name).

Ultralytics writes `last.pt` in place; a pod killed during that write would leave a truncated checkpoint and
lose the whole run. We write to a temporary file and rename, so `last.pt` is always a complete checkpoint; and we
write it on a thread of its own while the next epoch trains (train/checkpoints.py).

Speed: `yolo-workload train` passes `deterministic=False` unless the spec asks otherwise (Ultralytics' default of True
restricts cuDNN and torch to deterministic kernels). cuDNN autotuning stays off: on the H100 it gained under 1% on a
YOLOv8 training step but cost seconds of search whenever a new batch shape appears (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import csv
import os
import sys
from collections.abc import Iterator
from copy import copy
from pathlib import Path
from typing import Any

import torch

from yolo_workloads import offline
from yolo_workloads.contract import Task
from yolo_workloads.train.host_waits import MAX_BOXES, count_labels

offline.apply()

from ultralytics.models.yolo.classify import ClassificationTrainer  # noqa: E402  (after the offline patches)
from ultralytics.models.yolo.detect import DetectionTrainer  # noqa: E402
from ultralytics.models.yolo.obb import OBBTrainer  # noqa: E402
from ultralytics.models.yolo.pose import PoseTrainer  # noqa: E402
from ultralytics.models.yolo.segment import SegmentationTrainer  # noqa: E402


class _Offline:
    """Atomic checkpoint writes off the training thread (train/checkpoints.py), results.csv read without polars,
    each batch's most labels per image counted while the labels are still on the host (train/host_waits.py),
    images decoded ahead for the RAM cache dropped once set-up is done (train/images_ahead.py), a data set's
    first label scan in processes (train/label_scan.py), and the validation loader's workers started during the
    first epoch (`start_validation_workers`); mixed into each task's trainer."""

    csv: Path
    last: Path
    best: Path

    def read_results_csv(self) -> dict[str, list[Any]]:
        # Ultralytics reads this with polars for every checkpoint; the csv module does the same job and keeps
        # polars (a large native wheel) off the training path.
        try:
            with open(self.csv, newline="") as f:
                rows = list(csv.reader(f))
        except OSError:
            return {}
        if not rows:
            return {}
        header, body = [h.strip() for h in rows[0]], rows[1:]
        return {h: [_number(r[i]) for r in body if i < len(r)] for i, h in enumerate(header)}

    def preprocess_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        index = batch.get("batch_idx")
        if isinstance(index, torch.Tensor) and index.device.type == "cpu" and MAX_BOXES not in batch:
            boxes = batch.get("bboxes")
            sides = boxes[:, 2:4].numpy() if isinstance(boxes, torch.Tensor) and boxes.ndim == 2 else None
            count_labels(batch, index.numpy(), len(batch.get("im_file", ())), sides)
        return super().preprocess_batch(batch)  # type: ignore[misc, no-any-return]

    def save_model(self) -> Any:
        """The epoch's checkpoint, written by a background thread from a host copy (train/checkpoints.py); an EMA
        with non-finite weights goes Ultralytics' own way on this thread (it repairs them from the live model)."""
        from yolo_workloads.train import checkpoints

        writer = self._checkpoint_writer()
        writer.wait()  # the last write is done with writer.host
        if not checkpoints.finite(self.ema.ema):  # type: ignore[attr-defined]
            return _write_atomically(self, super().save_model)  # type: ignore[misc]
        view = checkpoints.frozen(self, self.read_results_csv(), writer.host)
        base_save = super().save_model.__func__  # type: ignore[misc]
        writer.submit(lambda: _write_atomically(view, lambda: base_save(view)))
        return True

    def _checkpoint_writer(self) -> Any:
        from yolo_workloads.train.checkpoints import CheckpointWriter

        writer = self.__dict__.get("_checkpoints")
        if writer is None:
            writer = self.__dict__["_checkpoints"] = CheckpointWriter()
        return writer

    def build_dataset(self, img_path: str, mode: str = "train", batch: int | None = None) -> Any:
        from yolo_workloads import system
        from yolo_workloads.train import label_scan

        with label_scan.in_processes(system.cpu_budget()):  # a first scan of the labels, side by side
            return super().build_dataset(img_path, mode, batch)  # type: ignore[misc]

    def _setup_train(self) -> Any:
        from yolo_workloads.train import images_ahead

        try:
            result = super()._setup_train()  # type: ignore[misc]
        finally:  # the RAM caches are filled: images decoded ahead for them and not taken are dropped
            images_ahead.release()
        self.add_callback("on_train_batch_end", start_validation_workers)  # type: ignore[attr-defined]
        return result

    def train(self) -> Any:
        try:
            return super().train()  # type: ignore[misc]
        finally:  # a finished, stopped or failed run leaves its last checkpoint complete on disk
            self._checkpoint_writer().wait()

    def final_eval(self) -> Any:
        self._checkpoint_writer().wait()  # it evaluates best.pt
        return super().final_eval()  # type: ignore[misc]

    def _handle_nan_recovery(self, epoch: int) -> Any:
        self._checkpoint_writer().wait()  # it may reload last.pt
        return super()._handle_nan_recovery(epoch)  # type: ignore[misc]


def start_validation_workers(trainer: Any) -> None:
    """Starts the validation loader's workers once the training loader's are running (called after each training
    batch; only the first call finds them not started).

    Why: Ultralytics forks a loader's workers at its first iteration, so the first validation waits for its
    workers to start and load their first batches (yolov8s on the H200: the first validation 2.0 s against 0.2 s
    later, 0.9 s of it outside Ultralytics' per-image clocks; docs/benchmarks.md). Started here, they load them
    while the first epoch trains, as they load each later validation's during the epoch before it. Not before the
    first training batch: Ultralytics defers each fork until no other loader's pin-memory thread is starting
    (ultralytics/data/build.py)."""
    loader = getattr(trainer, "test_loader", None)
    if loader is not None and getattr(loader, "iterator", False) is None and loader.num_workers > 0:
        loader.iterator = loader._get_iterator()


def _write_atomically(trainer: Any, save: Any) -> Any:
    """Ultralytics' `save_model` (`save`) writing `trainer.last` and `trainer.best` to temporary names, renamed into
    place once complete: a pod killed mid-write keeps the previous checkpoint."""
    last, best = Path(trainer.last), Path(trainer.best)
    tmp_last = last.with_name(f".{last.name}.tmp")
    tmp_best = best.with_name(f".{best.name}.tmp")
    trainer.last, trainer.best = tmp_last, tmp_best
    try:
        result = save()
    finally:
        trainer.last, trainer.best = last, best
    if tmp_best.exists():
        os.replace(tmp_best, best)
    if tmp_last.exists():
        os.replace(tmp_last, last)
    return result


class OfflineDetectionTrainer(_Offline, DetectionTrainer):
    """DetectionTrainer with atomic checkpoint writes, reading results.csv without polars, validating with the
    metric update a batch at a time (train/batched_validation.py)."""

    def get_validator(self) -> Any:
        from yolo_workloads.train.batched_validation import BatchedDetectionValidator

        return BatchedDetectionValidator(
            self.test_loader, save_dir=self.save_dir, args=copy(self.args), _callbacks=self.callbacks
        )


class _GpuAugmented:
    """Training images augmented on the GPU (train/gpu_augment.py): the training set's workers only letterbox, and
    each batch is augmented in `preprocess_batch`, before Ultralytics' own (normalising, multi-scale)."""

    args: Any
    device: Any
    _augment: Any = None
    _images: Any = None
    decode_jpegs_on_gpu = True
    """False: the workers decode (OpenCV) where the images are not kept on the GPU; for measuring the two."""

    def build_dataset(self, img_path: str, mode: str = "train", batch: int | None = None) -> Any:
        if mode == "train" and torch.device(self.device).type == "cuda":  # while the data set loads and caches
            from yolo_workloads.train import gpu_augment, gpu_augment_fused

            hsv = gpu_augment.recolours(vars(self.args))
            gpu_augment_fused.compile_ahead(torch.device(self.device), int(self.args.imgsz), hsv)
        dataset = super().build_dataset(img_path, mode, batch)  # type: ignore[misc]
        if mode == "train":
            augment = dataset.augment
            dataset.augment = False  # its transforms: Ultralytics' letterbox and format, nothing random
            dataset.transforms = dataset.build_transforms(hyp=self.args)
            dataset.augment = augment  # images still load (and cache) as a training set's do
            self._place_pixels(dataset)
        return dataset

    def _place_pixels(self, dataset: Any) -> None:
        """Where the training set's pixels will come from, recorded on the data set (tuning's trials reuse a data
        set across trainers): kept on the GPU (RAM cache, train/device_images.py), JPEGs decoded on the GPU
        (train/gpu_decode.py), or the workers' own. Each decision said once on stderr, with the reason when not."""
        from yolo_workloads.train import device_images, gpu_decode, pixel_free

        device = torch.device(self.device)
        kept: Any = None
        why: str | None = "training is not on a GPU"
        self._images = None  # a rebuilt loader (Ultralytics' OOM retry) frees the last one first
        if device.type == "cuda":
            why = device_images.why_not(dataset, int(self.args.imgsz), torch.cuda.mem_get_info(device)[0])
            if why is None:
                kept = device_images.upload(dataset, int(self.args.imgsz), device)
                dataset.transforms.append(device_images.DropPixels())
                dataset.load_image = pixel_free.StandInLoads(dataset)  # the workers send geometry only
                pixel_free.install(dataset)
            where = None if kept is None else f"kept on the GPU ({kept.slots.nbytes / 2**30:.1f} GiB)"
            print(f"train: training images {where or f'sent by the loader: {why}'}", file=sys.stderr, flush=True)
        decodes = False
        if kept is None and self.decode_jpegs_on_gpu:
            why = gpu_decode.why_not(dataset, device)
            if why is None:
                gpu_decode.install(dataset)
            gpu_decode.say(why)
            decodes = why is None
        dataset.yolo_device_images, dataset.yolo_decodes_on_gpu = kept, decodes

    def get_dataloader(self, dataset_path: str, batch_size: int = 16, rank: int = 0, mode: str = "train") -> Any:
        with _pinned_only_with_pixels():
            loader = super().get_dataloader(dataset_path, batch_size, rank, mode)  # type: ignore[misc]
        if mode != "train":
            return loader
        self._images = getattr(loader.dataset, "yolo_device_images", None)
        if self._augment is not None:
            self._augment.images = self._images
        from yolo_workloads.train.load_ahead import LoadAhead

        # JPEGs decoded and the augmentation's host half planned while the step before runs
        return LoadAhead(loader, int(self.args.imgsz), torch.device(self.device), self._plan)

    def _plan(self, batch: dict[str, Any]) -> Any:
        return self.gpu_augment().plan(batch)

    def gpu_augment(self) -> Any:
        from yolo_workloads.train.gpu_augment import GpuAugment, Hyper, unsupported

        if self._augment is None:
            refused = unsupported(vars(self.args))
            if refused:
                raise ValueError(f"augmentation gpu cannot apply {', '.join(refused)}")
            rank = int(os.environ.get("RANK", "0") or 0)
            self._augment = GpuAugment(Hyper.from_args(self.args), int(self.args.seed) + rank, self._images)
        return self._augment

    def _close_dataloader_mosaic(self) -> None:
        # Ultralytics' own rebuilds the data set's CPU augmentation without mosaic; here mosaic closes on the GPU.
        self.gpu_augment().close_mosaic()
        print("train: mosaic closed (augmentation on the GPU)", file=sys.stderr, flush=True)

    def preprocess_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        batch = self.gpu_augment()(batch, self.device)
        return super().preprocess_batch(batch)  # type: ignore[misc, no-any-return]


@contextlib.contextmanager
def _pinned_only_with_pixels() -> Iterator[None]:
    """Ultralytics' loaders built without their pin-memory thread where the batches carry no pixels (the training
    images kept on the GPU): the thread would walk each batch's per-image lists (file names, shapes, pads; about
    12 ms a batch of 128 under cProfile on an H100's host, 2026-12-05), holding the GIL, to pin nothing that is
    copied (the labels the GPU gets are pinned where they are made, `gpu_augment`)."""
    from ultralytics.models.yolo.detect import train as detect_train

    own = detect_train.build_dataloader  # type: ignore[attr-defined]

    def build(dataset: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(dataset, "yolo_device_images", None) is not None:
            kwargs["pin_memory"] = False
        return own(dataset, *args, **kwargs)

    detect_train.build_dataloader = build  # type: ignore[attr-defined]
    try:
        yield
    finally:
        detect_train.build_dataloader = own  # type: ignore[attr-defined]


class GpuAugmentedDetectionTrainer(_GpuAugmented, OfflineDetectionTrainer):
    """OfflineDetectionTrainer whose training augmentation runs on the GPU (`augmentation: gpu`)."""


class OfflineSegmentationTrainer(_Offline, SegmentationTrainer):
    """SegmentationTrainer with atomic checkpoint writes, reading results.csv without polars."""


class OfflinePoseTrainer(_Offline, PoseTrainer):
    """PoseTrainer with atomic checkpoint writes, reading results.csv without polars."""


class OfflineOBBTrainer(_Offline, OBBTrainer):
    """OBBTrainer with atomic checkpoint writes, reading results.csv without polars."""


class OfflineClassificationTrainer(_Offline, ClassificationTrainer):
    """ClassificationTrainer with atomic checkpoint writes, reading results.csv without polars."""


TRAINERS: dict[Task, type[Any]] = {
    "detect": OfflineDetectionTrainer,
    "segment": OfflineSegmentationTrainer,
    "pose": OfflinePoseTrainer,
    "obb": OfflineOBBTrainer,
    "classify": OfflineClassificationTrainer,
}
"""Each task's trainer: the one Ultralytics itself picks for a model of that task (`YOLO(...).train`)."""

GPU_AUGMENTED: dict[Task, type[Any]] = {"detect": GpuAugmentedDetectionTrainer}
"""The tasks whose training can augment on the GPU, and their trainers."""


def trainer_class(task: Task, augmentation: str = "cpu") -> type[Any]:
    """The trainer of `task` with its training augmentation on the CPU (Ultralytics' loader) or the GPU."""
    return GPU_AUGMENTED[task] if augmentation == "gpu" else TRAINERS[task]


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text.strip()
