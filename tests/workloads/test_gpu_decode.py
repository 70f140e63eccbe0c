"""JPEGs sent by the loader as bytes and decoded in the training process (train/gpu_decode.py), on the CPU here
(torchvision's decoder there; tests/gpu runs nvJPEG): which images go encoded, their sizes as Ultralytics' own, and a
batch through the real loader and the GPU augmentation that matches the loader's own pixels and boxes, with PNG,
progressive and EXIF-rotated images mixed in (those the workers still decode)."""

from __future__ import annotations

import io
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from yolo_workloads.train import gpu_augment, gpu_decode, load_ahead
from yolo_workloads.train.gpu_augment import GpuAugment, Hyper
from yolo_workloads.train.host_waits import BOXES_PER_IMAGE, MAX_BOXES

pytestmark = pytest.mark.workloads

IMGSZ = 160
CPU = torch.device("cpu")


def _jpeg(array: np.ndarray, **save: Any) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="JPEG", **save)
    return out.getvalue()


def _rotated_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    return exif


@pytest.fixture(scope="module")
def odd_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 shapes images at 320 px (resized to 160 on load), some squeezed to 320 x 200; image 1 a PNG, 2 a
    progressive JPEG, 3 with an EXIF rotation, 4 greyscale."""
    from yolo_workloads.datasets.shapes import generate

    root = tmp_path_factory.mktemp("odd")
    yaml_path = generate(root / "set", n=24, imgsz=320, val=4, seed=5, processes=1)
    files = sorted((root / "set" / "images" / "train").iterdir())
    for i, image in enumerate(files):
        if i % 3 == 2:
            im = cv2.imread(str(image))
            cv2.imwrite(str(image), cv2.resize(im, (320, 200), interpolation=cv2.INTER_AREA))
    rgb = np.asarray(Image.open(files[2]).convert("RGB"))
    Image.open(files[1]).save(files[1].with_suffix(".png"))
    files[1].unlink()
    files[2].write_bytes(_jpeg(rgb, progressive=True, quality=90))
    files[3].write_bytes(_jpeg(np.asarray(Image.open(files[3]).convert("RGB")), exif=_rotated_exif(), quality=90))
    files[4].write_bytes(_jpeg(np.asarray(Image.open(files[4]).convert("L")), quality=90))
    return yaml_path


def _dataset(yaml_path: Path) -> tuple[Any, Any]:
    """The training set as the GPU path's loader reads it (trainer._GpuAugmented.build_dataset), no cache."""
    from yolo_workloads import offline

    offline.apply()
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    cfg = get_cfg(overrides={"imgsz": IMGSZ, "data": str(yaml_path), "mosaic": 1.0, "cache": False})
    data = check_det_dataset(str(yaml_path))
    ds = build_yolo_dataset(cfg, data["train"], 16, data, mode="train", rect=False, stride=32)
    ds.augment = False
    ds.transforms = ds.build_transforms(hyp=cfg)
    ds.augment = True
    return cfg, ds


def test_only_baseline_colour_or_grey_jpegs_without_rotation_go_encoded() -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    assert gpu_decode.jpeg_size(_jpeg(rgb)) == (48, 64)
    assert gpu_decode.jpeg_size(_jpeg(rgb[..., 0])) == (48, 64)  # greyscale: decoded as RGB, as OpenCV does
    assert gpu_decode.jpeg_size(_jpeg(rgb, progressive=True)) is None
    assert gpu_decode.jpeg_size(_jpeg(rgb, exif=_rotated_exif())) is None
    cmyk = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(cmyk, format="JPEG")
    assert gpu_decode.jpeg_size(cmyk.getvalue()) is None
    png = io.BytesIO()
    Image.fromarray(rgb).save(png, format="PNG")
    assert gpu_decode.jpeg_size(png.getvalue()) is None
    assert gpu_decode.jpeg_size(b"not an image") is None


@pytest.mark.parametrize("hw0", [(320, 320), (200, 320), (333, 500), (500, 333), (160, 160), (100, 120), (641, 17)])
def test_the_resized_size_is_ultralytics_own(hw0: tuple[int, int], tmp_path: Path) -> None:
    """Against Ultralytics' load_image on a real file of that size."""
    from yolo_workloads import offline

    offline.apply()
    from ultralytics.data.base import BaseDataset

    image = tmp_path / "im.jpg"
    cv2.imwrite(str(image), np.full((*hw0, 3), 90, dtype=np.uint8))

    class One(BaseDataset):  # type: ignore[misc]
        def get_labels(self) -> list[dict[str, Any]]:
            return [{"im_file": str(image), "shape": hw0, "cls": np.zeros((0, 1)), "bboxes": np.zeros((0, 4))}]

        def build_transforms(self, hyp: Any = None) -> Any:
            return lambda x: x

    ds = One(str(tmp_path), imgsz=IMGSZ, augment=False)
    _, original, theirs = ds.load_image(0)
    assert tuple(original) == hw0
    assert gpu_decode.resized(hw0, IMGSZ) == tuple(theirs)


def test_jpegs_sent_as_bytes_augment_as_the_loaders_own(odd_data: Path) -> None:
    """The same samples through the real loader (2 worker processes), once as Ultralytics reads them and once with
    JPEGs sent encoded: the same boxes, and the same augmented pixels to the decoders' and resizers' rounding."""
    from ultralytics.data import build_dataloader

    cfg, ds = _dataset(odd_data)
    picks = list(range(12))
    sent = ds.collate_fn([ds[i] for i in picks])
    cfg, encoded_ds = _dataset(odd_data)
    gpu_decode.install(encoded_ds)
    loader = build_dataloader(encoded_ds, len(picks), 2, shuffle=False)  # the first batch: picks, in order
    loader_batch = next(iter(loader))
    assert loader_batch["img"].numel() == 0
    kinds = ["jpeg" if e.numel() else "pixels" for e in loader_batch[gpu_decode.ENCODED]]
    names = [Path(f).name for f in loader_batch["im_file"]]
    assert [names[i] for i, k in enumerate(kinds) if k == "pixels"] == names[1:4]  # png, progressive, rotated
    assert torch.equal(loader_batch["bboxes"], sent["bboxes"])

    hyp = Hyper.from_args(cfg)
    a = GpuAugment(hyp, seed=2)(sent, CPU)
    b = GpuAugment(hyp, seed=2)(loader_batch, CPU)
    assert gpu_decode.ENCODED not in b and gpu_decode.LOADED not in b
    assert torch.equal(a["batch_idx"], b["batch_idx"]) and torch.equal(a["bboxes"], b["bboxes"])
    difference = (a["img"] - b["img"]).abs()
    assert difference.mean() < 0.3, difference.mean()  # 0-255: libjpeg builds and bilinear rounding differ
    assert difference.max() < 16  # a level or two, more only at a few sharp edges


def test_the_decoded_images_sit_where_the_loader_puts_them(odd_data: Path) -> None:
    """Before augmenting: each decoded JPEG at its slot's top-left equals the loader's letterboxed pixels at their
    offset (squeezed, greyscale and square alike); an image its worker decoded is the loader's own, padding and all."""
    _, ds = _dataset(odd_data)
    _, encoded_ds = _dataset(odd_data)
    gpu_decode.install(encoded_ds)
    picks = [0, 1, 4, 5, 8]  # square, the PNG, greyscale, square, squeezed
    sent = ds.collate_fn([ds[i] for i in picks])
    batch = encoded_ds.collate_fn([encoded_ds[i] for i in picks])
    sizes, pads = gpu_decode.placement(batch)
    images, pixel_pads = gpu_decode.batch_images(batch, sizes, pads, IMGSZ, CPU)
    assert sizes[4].tolist() == [100, 160] and pads[4].tolist() == [0, 30]
    assert (pixel_pads[[0, 2, 3, 4]] == 0).all() and pixel_pads[1].tolist() == pads[1].tolist()
    assert torch.equal(images[1], sent["img"][1])  # the PNG: its worker's pixels, unchanged
    for k in (0, 2, 3, 4):
        (h, w), (left, top) = sizes[k], pads[k].astype(int)
        theirs = sent["img"][k, :, top : top + h, left : left + w].float()
        assert (images[k, :, :h, :w].float() - theirs).abs().mean() < 1.0


def test_where_the_workers_keep_decoding(odd_data: Path) -> None:
    _, ds = _dataset(odd_data)
    assert gpu_decode.why_not(ds, CPU) == "training is not on a GPU"
    ds.cache = "ram"
    assert "cached (ram)" in str(gpu_decode.why_not(ds, CPU))
    ds.cache = None
    ds.channels = 1
    assert "1 channels" in str(gpu_decode.why_not(ds, CPU))


def test_an_npy_cache_beside_an_image_is_read_as_before(odd_data: Path, tmp_path: Path) -> None:
    """Ultralytics reads an up-to-date `.npy` beside an image in any cache mode: that image is not sent encoded."""
    copy = tmp_path / "set"
    shutil.copytree(odd_data.parent, copy)
    yaml_path = copy / odd_data.name
    yaml_path.write_text(yaml_path.read_text().replace(str(odd_data.parent), str(copy)))
    _, ds = _dataset(yaml_path)
    np.save(ds.npy_files[0], cv2.imread(ds.im_files[0]))
    gpu_decode.install(ds)
    assert ds[0][gpu_decode.ENCODED].numel() == 0 and ds[0][gpu_decode.LOADED].shape == (3, IMGSZ, IMGSZ)
    assert ds[5][gpu_decode.ENCODED].numel() > 0


def test_decoding_ahead_hands_every_batch_in_order_and_stops_with_the_epoch(odd_data: Path) -> None:
    """The real loader (2 workers) behind the decoding thread: each epoch's batches in the loader's order, decoded
    as inline; an epoch left early (training stopped) stops the thread; the loader's attributes read through; an
    error reaches the training process."""
    from ultralytics.data import build_dataloader

    _, ds = _dataset(odd_data)
    gpu_decode.install(ds)
    loader = load_ahead.LoadAhead(build_dataloader(ds, 6, 2, shuffle=False), IMGSZ, CPU)
    assert len(loader) == 4 and loader.dataset is ds and loader.num_workers == 2
    files = []
    for batch in loader:
        assert load_ahead.DECODED in batch
        images, pixel_pads = load_ahead.take(batch, CPU)
        assert images.shape == (len(batch["im_file"]), 3, IMGSZ, IMGSZ) and pixel_pads.shape == (len(images), 2)
        inline, _ = gpu_decode.batch_images(batch, *gpu_decode.placement(batch), IMGSZ, CPU)
        assert torch.equal(images, inline)
        files += batch["im_file"]
    assert files == list(ds.im_files)
    for _ in loader:  # left after one batch (training stopped): the thread ends, what it had decoded is dropped
        break
    for thread in [t for t in threading.enumerate() if t.name == "load-ahead"]:
        thread.join(timeout=10)
        assert not thread.is_alive()
    assert len(list(loader)) == len(loader)  # the next epoch: the loader's next batches, as many as ever
    batches = iter(loader)
    next(batches)  # an epoch left open as the process ends: its exit stops the thread and waits for it
    assert [t for t in threading.enumerate() if t.name == "load-ahead"]
    load_ahead.stop_threads()
    assert not [t for t in threading.enumerate() if t.name == "load-ahead"] and not load_ahead._RUNNING

    class Broken:
        def __iter__(self) -> Any:
            yield from ()
            raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(load_ahead.LoadAhead(Broken(), IMGSZ, CPU))


def test_batches_planned_ahead_augment_as_those_planned_in_the_step(odd_data: Path) -> None:
    """The augmentation's host half planned by the loader's thread (load_ahead.PLANNED), batch after batch, gives
    the step the same images and labels as planning each batch in the step from the same seed; a batch with its plan
    taken leaves no plan behind."""
    from ultralytics.data import build_dataloader

    cfg, ds = _dataset(odd_data)
    hyp = Hyper.from_args(cfg)
    ahead, inline = GpuAugment(hyp, seed=7), GpuAugment(hyp, seed=7)
    planned = load_ahead.LoadAhead(build_dataloader(ds, 6, 2, shuffle=False), IMGSZ, CPU, ahead.plan)
    plain = build_dataloader(ds, 6, 2, shuffle=False)
    compared = 0
    for from_thread, from_loader in zip(planned, plain, strict=True):
        assert isinstance(from_thread.get(load_ahead.PLANNED), gpu_augment.Plan)
        assert from_thread["im_file"] == from_loader["im_file"]
        a, b = ahead(from_thread, CPU), inline(from_loader, CPU)
        assert load_ahead.PLANNED not in a
        assert torch.equal(a["img"], b["img"]) and a["img"].shape == (len(a["im_file"]), 3, IMGSZ, IMGSZ)
        for key in ("batch_idx", "cls", "bboxes"):
            assert torch.equal(a[key], b[key]), key
        assert (a[MAX_BOXES], a[BOXES_PER_IMAGE].tolist()) == (b[MAX_BOXES], b[BOXES_PER_IMAGE].tolist())
        compared += 1
    assert compared == 4


def test_the_training_loader_pins_only_batches_that_carry_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    """While the GPU path's trainer builds its loaders, Ultralytics' `build_dataloader` is asked for no pin-memory
    thread for a data set whose images are kept on the GPU (its batches carry labels only), as before for others;
    Ultralytics' own function is back afterwards."""
    from types import SimpleNamespace

    from ultralytics.models.yolo.detect import train as detect_train
    from yolo_workloads.train import trainer

    asked: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(detect_train, "build_dataloader", lambda ds, *a, **kw: asked.append((ds.name, kw)))
    own = detect_train.build_dataloader
    kept = SimpleNamespace(name="kept", yolo_device_images=object())
    sent = SimpleNamespace(name="sent", yolo_device_images=None)
    with trainer._pinned_only_with_pixels():
        detect_train.build_dataloader(kept, 16, 4, shuffle=True)
        detect_train.build_dataloader(sent, 16, 4, shuffle=True)
        detect_train.build_dataloader(SimpleNamespace(name="val"), 32, 8, shuffle=False)
    assert asked == [("kept", {"shuffle": True, "pin_memory": False}), ("sent", {"shuffle": True}),
                     ("val", {"shuffle": False})]  # fmt: skip
    assert detect_train.build_dataloader is own


def test_a_jpeg_the_decoder_refuses_is_decoded_by_opencv_and_an_unreadable_one_is_named(
    odd_data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A batch with one JPEG the decoder refuses (as nvJPEG refuses 12-bit or arithmetic-coded ones): the others
    as decoded, that one by OpenCV with a line on stderr; bytes no decoder reads fail with the file named."""
    import torchvision.io

    files = sorted((odd_data.parent / "images" / "train").glob("*.jpg"))[:4]
    encoded = [torch.frombuffer(bytearray(f.read_bytes()), dtype=torch.uint8) for f in files]
    real = torchvision.io.decode_jpeg
    refused = encoded[2]

    def picky(images: list[torch.Tensor], **kwargs: Any) -> Any:
        if any(image is refused for image in images):
            raise RuntimeError("Error while decoding JPEG images: unsupported")
        return real(images, **kwargs)

    monkeypatch.setattr(torchvision.io, "decode_jpeg", picky)
    decoded = gpu_decode.decode_each(encoded, [str(f) for f in files], CPU)
    for image, f in zip(decoded, files, strict=True):
        theirs = torch.as_tensor(cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)).permute(2, 0, 1)
        assert image.shape == theirs.shape and (image.float() - theirs.float()).abs().mean() < 1.0
    assert torch.equal(
        decoded[2], torch.as_tensor(cv2.cvtColor(cv2.imread(str(files[2])), cv2.COLOR_BGR2RGB)).permute(2, 0, 1)
    )
    assert f"{files[2]} decoded by OpenCV" in capsys.readouterr().err

    refused = torch.frombuffer(bytearray(b"\xff\xd8 not a jpeg at all"), dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"broken\.jpg: not a readable image"):
        gpu_decode.decode_each([encoded[0], refused], [str(files[0]), "/data/broken.jpg"], CPU)


def test_leaving_an_epoch_never_waits_for_the_loader() -> None:
    """A tuning trial stops mid-epoch and then closes its loader: leaving returns at once even when the loader's
    next batch never comes, and the thread ends once the loader lets it go."""
    release = threading.Event()

    class Stuck:
        def __len__(self) -> int:
            return 3

        def __iter__(self) -> Any:
            yield {"im_file": ["a.jpg"]}
            release.wait()  # a closed loader's next batch
            yield {"im_file": ["b.jpg"]}

    started = time.monotonic()
    for batch in load_ahead.LoadAhead(Stuck(), IMGSZ, CPU):
        assert batch["im_file"] == ["a.jpg"]
        break
    assert time.monotonic() - started < 2
    release.set()
    for thread in [t for t in threading.enumerate() if t.name == "load-ahead"]:
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_a_tuning_trial_reusing_the_data_set_decodes_as_the_first(
    odd_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tuning's trials build each data set once per process: a later trial's trainer finds where the pixels come
    from on the data set (here: JPEGs decoded by the training process, enabled on the CPU for the test), not on
    the trainer that built it."""
    from ultralytics.utils import DEFAULT_CFG_DICT
    from yolo_workloads.tune.measure import shared_data_trainer_class

    monkeypatch.setattr(gpu_decode, "why_not", lambda dataset, device: None)
    trainer_class = shared_data_trainer_class("detect", "gpu")
    built = []
    for trial in range(2):
        overrides = {"model": "yolov8n.yaml", "data": str(odd_data), "imgsz": IMGSZ, "device": "cpu", "batch": 4,
                     "workers": 0, "cache": False, "plots": False, "save_dir": str(tmp_path / f"t{trial}")}  # fmt: skip
        trainer = trainer_class(cfg={**DEFAULT_CFG_DICT, **overrides}, overrides=overrides)
        trainer.model = trainer.get_model(cfg="yolov8n.yaml", verbose=False)  # its stride sizes the data set
        loader = trainer.get_dataloader(trainer.data["train"], 4, -1, "train")  # rank -1: one process
        assert isinstance(loader, load_ahead.LoadAhead), trial
        batch = next(iter(loader))
        assert load_ahead.DECODED in batch
        built.append(loader.dataset)
    assert built[0] is built[1]  # the second trial did reuse the first one's data set


@pytest.mark.parametrize(
    ("capability", "decodes"), [((7, 5), False), ((8, 0), True), ((8, 6), False), ((8, 9), True), ((9, 0), True)]
)
def test_only_gpus_with_hardware_jpeg_decoders_decode(
    capability: tuple[int, int], decodes: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without hardware decoders nvJPEG decodes on the host, one image after another, in the training process:
    slower than the workers, so those GPUs keep the workers decoding, and the log names the GPU."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some GPU")
    probed: list[torch.device] = []
    monkeypatch.setattr(gpu_decode, "_probe", probed.append)  # append returns None: the probe succeeded
    why = gpu_decode.why_not(object(), torch.device("cuda", 0))
    assert (why is None) is decodes and bool(probed) is decodes
    if not decodes:
        assert (
            why
            == f"the GPU (Some GPU, compute capability {capability[0]}.{capability[1]}) has no hardware JPEG decoder"
        )
