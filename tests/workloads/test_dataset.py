"""The shapes generator and the data set checks that run before any GPU work."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from yolo_workloads.contract import default_val_images
from yolo_workloads.datasets.shapes import ensure_shapes, generate
from yolo_workloads.datasets.validate import DatasetError, validate_dataset

pytestmark = pytest.mark.workloads


def test_generation_is_deterministic_and_independent_of_processes(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", n=6, imgsz=64, val=2, seed=3, processes=1).parent
    b = generate(tmp_path / "b", n=6, imgsz=64, val=2, seed=3, processes=2).parent
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".jpg"]) == 8
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    c = generate(tmp_path / "c", n=6, imgsz=64, val=2, seed=4, processes=1).parent
    assert (c / "labels/train/train_000000.txt").read_text() != (a / "labels/train/train_000000.txt").read_text()


def test_generated_set_passes_validation(shapes_data: Path) -> None:
    info = validate_dataset(shapes_data)
    assert (info.train_images, info.val_images) == (24, 4)
    assert info.names[0] == "circle"


def test_ensure_shapes_replaces_a_partial_set_and_is_idempotent(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "images" / "train").mkdir(parents=True)
    (root / "images" / "train" / "leftover.jpg").write_bytes(b"half a file")  # a killed earlier attempt
    path = ensure_shapes(root, n=4, imgsz=64, val=1)
    assert not (root / "images" / "train" / "leftover.jpg").exists()
    assert validate_dataset(path).train_images == 4
    mtime = path.stat().st_mtime_ns
    assert ensure_shapes(root, n=4, imgsz=64, val=1) == path and path.stat().st_mtime_ns == mtime
    assert not list(root.glob(".partial-*"))


def _copy(shapes_data: Path, tmp_path: Path) -> Path:
    root = tmp_path / "set"
    shutil.copytree(shapes_data.parent, root)
    return root


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("0 0.5 0.5 0.1", r"train_000002.txt:2: expected 5 fields"),
        ("9 0.5 0.5 0.1 0.1", r"train_000002.txt:2: class id 9 is not in `names`"),
        ("1 0.5 1.5 0.1 0.1", r"train_000002.txt:2: cy=1.5 is outside \[-0.01, 1.01\]"),
        ("1 0.5 1.0101 0.1 0.1", r"train_000002.txt:2: cy=1.0101 is outside \[-0.01, 1.01\]"),
        ("1 -0.02 0.5 0.1 0.1", r"train_000002.txt:2: cx=-0.02 is outside"),
        ("1 0.5 0.5 -0.001 0.1", r"train_000002.txt:2: w=-0.001 is outside \[0, 1.01\]"),
        ("1 0.5 abc 0.1 0.1", r"train_000002.txt:2: fields must be numbers"),
        ("1.5 0.5 0.5 0.1 0.1", r"train_000002.txt:2: class id 1.5"),
    ],
)
def test_bad_label_line_is_named(shapes_data: Path, tmp_path: Path, label: str, expected: str) -> None:
    root = _copy(shapes_data, tmp_path)
    target = root / "labels/train/train_000002.txt"
    first = target.read_text().splitlines()[0]
    target.write_text(f"{first}\n{label}\n")
    with pytest.raises(DatasetError, match=expected):
        validate_dataset(root / "data.yaml")


def test_a_detection_set_may_label_with_polygons_but_not_mix_them_with_boxes_in_a_file(
    shapes_data: Path, tmp_path: Path
) -> None:
    """Ultralytics trains a detector on polygon labels (each polygon's box), and drops an image whose label file
    mixes box and polygon lines as corrupt: the first is accepted, the second refused naming both lines."""
    root = _copy(shapes_data, tmp_path)
    target = root / "labels/train/train_000002.txt"
    target.write_text("1 0.1 0.1 0.3 0.1 0.2 0.4\n0 0.5 0.5 0.2 0.2 0.6 0.6 0.5 0.7\n")
    assert validate_dataset(root / "data.yaml").train_images > 0
    target.write_text("1 0.1 0.1 0.3 0.1 0.2 1.4\n")
    with pytest.raises(DatasetError, match=r"train_000002.txt:1: y3=1.4 is outside \[-0.01, 1.01\]"):
        validate_dataset(root / "data.yaml")
    target.write_text("1 0.5 0.5 0.1 0.1\n\n0 0.1 0.1 0.3 0.1 0.2 0.4\n")
    with pytest.raises(DatasetError, match=r"train_000002.txt:3: box lines \(line 1\) and polygon lines \(line 3\)"):
        validate_dataset(root / "data.yaml")
    with pytest.raises(DatasetError, match=r"\.txt:1: expected `class x1 y1 x2 y2 x3 y3 \.\.\.` .*, found 5: "):
        validate_dataset(root / "data.yaml", "segment")  # Ultralytics trains segment only with every polygon


def _ultralytics_finds(data: Path) -> bool:
    """The oracle: Ultralytics' own resolution of a data set YAML finds its splits."""
    from ultralytics.data.utils import check_det_dataset

    try:
        resolved = check_det_dataset(str(data), autodownload=False)
    except FileNotFoundError:
        return False
    return all(Path(resolved[k]).exists() for k in ("train", "val"))


def test_splits_are_found_where_ultralytics_finds_them(
    shapes_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Roboflow export (`train: ../train/images` beside the YAML: Ultralytics' second try drops the `../`) is
    accepted; a relative `path` is Ultralytics' working directory or datasets folder, never the YAML's, and where
    that hides the splits the refusal says so."""
    root = tmp_path / "export"
    for split, theirs in (("train", "train"), ("val", "valid")):
        for kind in ("images", "labels"):
            shutil.copytree(shapes_data.parent / kind / split, root / theirs / kind)
    data = root / "data.yaml"
    data.write_text("train: ../train/images\nval: ../valid/images\nnames: [a, b, c, d, e, f]\n")
    monkeypatch.chdir(tmp_path)
    assert _ultralytics_finds(data)
    assert validate_dataset(data).val_images == len(list((root / "valid/images").iterdir()))

    data.write_text("path: .\ntrain: train/images\nval: valid/images\nnames: [a, b, c, d, e, f]\n")
    assert not _ultralytics_finds(data)
    with pytest.raises(DatasetError, match=r"`train` points to .*, which does not exist \(`path: \.` is resolved by "
                       r"Ultralytics against the working directory .* leave `path` out of data.yaml\)"):  # fmt: skip
        validate_dataset(data)
    data.write_text("path: /home/someone/datasets/x\ntrain: train/images\nval: valid/images\nnames: [a, b, c]\n")
    with pytest.raises(DatasetError, match=r"/home/someone/datasets/x/train/images, which does not exist \(`path: "
                       r"/home/someone/datasets/x` is not where the data set is on this machine; .*export/train/"
                       r"images is there: leave `path` out of data.yaml\)"):  # fmt: skip
        validate_dataset(data)
    data.write_text("path: .\ntrain: train/images\nval: valid/images\nnames: [a, b, c, d, e, f]\n")
    monkeypatch.chdir(root)
    assert _ultralytics_finds(data)
    assert validate_dataset(data).train_images > 0


def test_coordinates_a_hair_outside_0_1_pass_as_in_ultralytics(shapes_data: Path, tmp_path: Path) -> None:
    """Exports round (1.0000001) and boxes at the border land a little outside; Ultralytics allows 1%."""
    root = _copy(shapes_data, tmp_path)
    target = root / "labels/train/train_000002.txt"
    target.write_text("1 1.0000001 0.5 0.2 0.1\n0 -0.005 0.5 0.01 1.01\n")
    assert validate_dataset(root / "data.yaml").train_images > 0


def test_yaml_problems_are_named(shapes_data: Path, tmp_path: Path) -> None:
    root = _copy(shapes_data, tmp_path)
    data = root / "data.yaml"
    with pytest.raises(DatasetError, match="data set YAML not found"):
        validate_dataset(root / "missing.yaml")
    with pytest.raises(
        DatasetError, match=r"set: a folder; a detect data set is named by its YAML \(in it: data.yaml\)"
    ):
        validate_dataset(root)
    data.write_text("train: images/train\nval: [unclosed\n")
    with pytest.raises(DatasetError, match=r"data.yaml:\d+: not valid YAML"):
        validate_dataset(data)
    data.write_text("train: images/train\nval: images/val\n")
    with pytest.raises(DatasetError, match="`names` is missing"):
        validate_dataset(data)
    for extra, said in (
        ("nc: 3\nnames: [a, b]", r"`nc: 3` but `names` has 2 classes"),
        ("nc: 2.5", r"`nc: 2.5` must be a whole number"),
        ("names: {0: a, 2: b}", r"`names` ids must be 0..1, found \[0, 2\]"),
    ):
        data.write_text(f"train: images/train\nval: images/val\n{extra}\n")
        with pytest.raises(DatasetError, match=said):
            validate_dataset(data)


def test_what_ultralytics_accepts_of_a_yaml_is_accepted(shapes_data: Path, tmp_path: Path) -> None:
    """`nc` without `names` (classes named class_0, ...), and `validation:` for `val:`, as Ultralytics reads them."""
    root = _copy(shapes_data, tmp_path)
    data = root / "data.yaml"
    classes = len(yaml.safe_load(data.read_text())["names"])
    data.write_text(f"train: images/train\nvalidation: images/val\nnc: {classes}\n")
    info = validate_dataset(data)
    assert info.names == {i: f"class_{i}" for i in range(classes)} and info.val_images > 0
    assert _ultralytics_finds(data)


def test_missing_or_empty_folders_are_named(shapes_data: Path, tmp_path: Path) -> None:
    root = _copy(shapes_data, tmp_path)
    shutil.rmtree(root / "labels" / "val")
    with pytest.raises(DatasetError, match=r"labels/val: no label files for the `val` images"):
        validate_dataset(root / "data.yaml")
    shutil.rmtree(root / "images" / "val")
    (root / "images" / "val").mkdir()
    with pytest.raises(DatasetError, match=r"`val` \(images/val\) contains no images"):
        validate_dataset(root / "data.yaml")
    shutil.rmtree(root / "images" / "train")
    with pytest.raises(DatasetError, match=r"`train` points to .*images/train, which does not exist"):
        validate_dataset(root / "data.yaml")


def test_images_ultralytics_would_drop_as_corrupt_are_named(shapes_data: Path, tmp_path: Path) -> None:
    """Ultralytics trains on without an unreadable or tiny image (a warning in its log); the operator refuses the
    set up front, naming the first such image and counting the rest."""
    import numpy as np
    from PIL import Image

    root = _copy(shapes_data, tmp_path)
    data = root / "data.yaml"
    (root / "images/train/train_000001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=r"images/train/train_000001.jpg: not an image Pillow can read \(cannot "
                       r"identify image file\) \(remove or replace it\)$"):  # fmt: skip
        validate_dataset(data)
    (root / "images/train/train_000003.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"train_000001.jpg: .*; 1 more of the `train` images too, e.g. "
                       r"train_000003.jpg \(remove or replace them\)"):  # fmt: skip
        validate_dataset(data)
    for name in ("train_000001.jpg", "train_000003.jpg"):
        shutil.copy(shapes_data.parent / "images/train" / name, root / "images/train" / name)
    assert validate_dataset(data).train_images > 0
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(root / "images/val/val_000000.jpg", format="GIF")
    with pytest.raises(DatasetError, match=r"val_000000.jpg: a GIF image by its content \(Ultralytics takes avif, bmp"):
        validate_dataset(data)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(root / "images/val/val_000000.jpg", format="PNG")
    assert validate_dataset(data).val_images > 0  # a PNG named .jpg: Ultralytics reads it by its content
    Image.fromarray(np.zeros((9, 40, 3), np.uint8)).save(root / "images/val/val_000000.jpg")
    with pytest.raises(DatasetError, match=r"val_000000.jpg: 40x9 px \(Ultralytics needs at least 10 px a side\)"):
        validate_dataset(data)


def test_a_classify_set_with_an_unreadable_image_is_named(tmp_path: Path) -> None:
    root = tmp_path / "classify"
    generate(root, n=12, imgsz=64, val=2, seed=1, processes=1, task="classify")
    victim = sorted((root / "val").rglob("*.jpg"))[0]
    victim.write_bytes(b"\x89PNG broken")
    with pytest.raises(DatasetError, match=rf"{victim.name}: not an image Pillow can read"):
        validate_dataset(root, "classify")


def test_tuning_refuses_an_unreadable_image_with_exit_2_naming_it(
    shapes_data: Path, tmp_path: Path, netblock, workload
) -> None:
    """Before: Ultralytics' Image.open patch, looking for an optional HEIF plugin, crashed the tuning pod (exit 1,
    retried to its backoff limit) with 'No module named pi_heif'."""
    root = _copy(shapes_data, tmp_path)
    (root / "images/train/train_000002.jpg").write_bytes(b"GIF89a truncated")
    config = {
        "model": {"architecture": "yolov8n.yaml"}, "data": {"yaml": str(root / "data.yaml")}, "imgsz": 64,
        "gpus": 0, "output_dir": str(tmp_path / "out"), "termination_log": str(tmp_path / "termination-log"),
    }  # fmt: skip
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump(config))
    env, attempts = netblock
    proc = workload(["tune", "--config", str(tmp_path / "tune.yaml")], env)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err[-3000:]
    message = (tmp_path / "termination-log").read_text()
    assert "images/train/train_000002.jpg: not an image Pillow can read" in message
    assert "Traceback" not in err and "pi_heif" not in err
    assert attempts.read_text() == ""


def test_train_verb_refuses_a_bad_set_with_exit_2_and_a_termination_message(
    shapes_data: Path, tmp_path: Path, netblock, workload
) -> None:
    root = _copy(shapes_data, tmp_path)
    (root / "labels/val/val_000001.txt").write_text("0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.2\n")
    config = {
        "model": {"architecture": "yolov8n.yaml"},
        "data": {"yaml": str(root / "data.yaml")},
        "imgsz": 64,
        "gpus": 0,
        "output_dir": str(tmp_path / "out"),
        "termination_log": str(tmp_path / "termination-log"),
        "metrics_port": None,
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    env, attempts = netblock
    proc = workload(["train", "--config", str(tmp_path / "train.yaml")], env)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    message = (tmp_path / "termination-log").read_text()
    assert "labels/val/val_000001.txt:2: expected 5 fields" in message
    assert message in err
    assert not (tmp_path / "out" / "weights").exists()
    assert attempts.read_text() == ""


def test_a_set_that_names_no_validation_count_gets_the_contracts_default(tmp_path: Path) -> None:
    """What the cluster's pods generate (render leaves val_images unset) is what the local runner generates."""
    path = generate(tmp_path / "d", n=10, imgsz=32, seed=1, processes=1)
    assert validate_dataset(path).val_images == default_val_images(10) == 2


def test_a_split_given_as_a_list_of_images_is_read_as_ultralytics_reads_it(
    shapes_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`./` lines from the list's folder, other relative ones from the working directory, a byte-order mark allowed,
    lines naming no image skipped; a listed image that is not there is named with its line."""
    root = _copy(shapes_data, tmp_path)
    train = sorted((root / "images/train").iterdir())
    listing = root / "train.list"
    listing.write_text("\ufeff" + "\n".join(f"./images/train/{p.name}" for p in train) + "\nnotes.md\n")
    data = root / "data.yaml"
    names = yaml.safe_load(data.read_text())["names"]
    data.write_text(yaml.safe_dump({"train": "train.list", "val": "images/val", "names": names}))
    monkeypatch.chdir(tmp_path)
    assert validate_dataset(data).train_images == len(train)
    assert _ultralytics_finds(data)
    listing.write_text("\n".join(f"images/train/{p.name}" for p in train))
    with pytest.raises(DatasetError, match=rf"train.list:1: images/train/{train[0].name} does not exist \(a relative "
                       r"line without ./ is read from the working directory"):  # fmt: skip
        validate_dataset(data)


def test_the_image_files_are_the_ones_ultralytics_takes(shapes_data: Path, tmp_path: Path) -> None:
    """The same suffixes as Ultralytics' IMG_FORMATS; a HEIC photo, which it reads only through a plugin it would
    download, is refused by name with what to do."""
    from ultralytics.data.utils import IMG_FORMATS
    from yolo_workloads.datasets.images import IMAGE_SUFFIXES

    assert {f".{s}" for s in IMG_FORMATS} == IMAGE_SUFFIXES
    root = _copy(shapes_data, tmp_path)
    (root / "images/val/phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    with pytest.raises(DatasetError, match=r"phone.heic: not an image Pillow can read \(.*HEIC/HEIF needs a plugin"):
        validate_dataset(root / "data.yaml")
