"""Every task over HTTP on a real `yolo-workload serve` process: Open Inference Protocol v2 outputs per task,
`/v1/detect` (and `/v1/predict`) JSON per task, masks as RLE or polygons, and bad input answered as for
detection (4xx naming the field or the image; a bad request in a batch fails alone). Also the task check at
start: weights of another task than `--task` end the server with exit code 2, naming both."""

from __future__ import annotations

import base64
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from serve_fixtures import Server, images, offline_env, serve

pytestmark = pytest.mark.workloads
ARCH = {
    "segment": "yolov8n-seg.yaml",
    "pose": "yolov8n-pose.yaml",
    "obb": "yolov8n-obb.yaml",
    "classify": "yolov8n-cls.yaml",
}
SIZES = [(72, 96), (96, 96), (60, 100)]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from yolo_workloads.serve.synthetic import make_signal_weights

    tmp = tmp_path_factory.mktemp("task-weights")
    # seed 1 gives every image detections with distinct scores (ties would let the order depend on the batch);
    # obb's 80 classes saturate at 1.0 with the default head scale
    return {
        task: make_signal_weights(str(tmp / f"{task}.pt"), arch, seed=1, cls_scale=30.0 if task == "obb" else 100.0)
        for task, arch in ARCH.items()
    }


@pytest.fixture(scope="module", params=list(ARCH))
def server(
    request: pytest.FixtureRequest, weights: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    task = request.param
    imgsz = 64 if task == "classify" else 96
    with serve(tmp_path_factory.mktemp(task), weights[task], imgsz=imgsz, max_queue_delay_ms=40) as s:
        s.task = task  # type: ignore[attr-defined]
        yield s


@pytest.fixture(scope="module")
def pngs() -> list[bytes]:
    from yolo_workloads.serve import synthetic

    return [synthetic.encode(im, "png") for im in images(3, seed=7, sizes=SIZES)]


def _v2(c: httpx.Client, pngs: list[bytes], outputs: list[str] | None = None) -> httpx.Response:
    doc: dict[str, Any] = {
        "inputs": [
            {
                "name": "images",
                "shape": [len(pngs)],
                "datatype": "BYTES",
                "data": [base64.b64encode(p).decode() for p in pngs],
            }
        ]
    }
    if outputs is not None:
        doc["outputs"] = [{"name": n} for n in outputs]
    return c.post("/v2/models/yolo/infer", json=doc)


def _tensors(res: httpx.Response) -> dict[str, np.ndarray]:
    assert res.status_code == 200, res.text
    dt = {"FP32": np.float32, "INT32": np.int32}
    return {o["name"]: np.array(o["data"], dt[o["datatype"]]).reshape(o["shape"]) for o in res.json()["outputs"]}


def test_v2_outputs_and_metadata_per_task(server: Server, pngs: list[bytes]) -> None:
    from yolo_workloads.serve.v2 import TASK_OUTPUTS

    task: str = server.task  # type: ignore[attr-defined]
    with server.client() as c:
        meta = c.get("/v2/models/yolo").json()
        out = _tensors(_v2(c, pngs))
    assert meta["parameters"]["task"] == task
    assert [o["name"] for o in meta["outputs"]] == list(TASK_OUTPUTS[task]) == list(out)
    if task == "classify":
        assert out["classes"].shape == out["scores"].shape == (3, 5)
        assert (np.diff(out["scores"], axis=1) <= 0).all() and (out["scores"].sum(1) <= 1.0001).all()
        return
    counts = out["counts"]
    assert counts.min() > 0, "signal weights give detections on every image"
    k = int(counts.max())
    assert out["boxes"].shape == (3, k, 4)
    if task == "pose":
        assert out["keypoints"].shape == (3, k, 17, 3)
    if task == "obb":
        assert out["obb"].shape == (3, k, 5)
    if task == "segment":
        lengths = out["mask_rle_lengths"]
        assert lengths.shape == (3, k) and ((lengths > 0).sum(1) == counts).all()
        rle = out["mask_rle"]
        assert rle.shape == (int(lengths.sum()),)
        start = 0
        for i, (h, w) in enumerate(SIZES):  # each mask's runs cover its image exactly
            for n in lengths[i, : counts[i]]:
                assert rle[start : start + n].sum() == h * w
                start += n


def test_v1_json_per_task_matches_v2(server: Server, pngs: list[bytes]) -> None:
    from yolo_workloads.serve.tasks import rle_decode

    task: str = server.task  # type: ignore[attr-defined]
    with server.client() as c:
        out = _tensors(_v2(c, pngs[:1]))
        doc = c.post("/v1/detect", content=pngs[0], headers={"content-type": "image/png"}).json()
        alias = c.post("/v1/predict", content=pngs[0], headers={"content-type": "image/png"}).json()
    assert doc == alias and doc["task"] == task and doc["model"] == "yolo"
    image = doc["images"][0]
    if task == "classify":
        assert [r["class_id"] for r in image["classifications"]] == out["classes"][0].tolist()
        return
    rows = image["detections"]
    assert len(rows) == out["counts"][0]
    for j, row in enumerate(rows):
        np.testing.assert_allclose(row["box"], out["boxes"][0, j], atol=0.01)
        if task == "pose":
            np.testing.assert_allclose(row["keypoints"], out["keypoints"][0, j], atol=0.01)
        if task == "obb":
            np.testing.assert_allclose(row["obb"], out["obb"][0, j], atol=0.01)  # JSON: 2 decimals, angle 4
        if task == "segment":
            assert row["mask"]["size"] == [72, 96]
            mask = rle_decode(np.array(row["mask"]["counts"]), 72, 96)
            assert mask.shape == (72, 96) and mask.sum() == sum(row["mask"]["counts"][1::2])


def test_masks_as_polygons_on_request(server: Server, pngs: list[bytes]) -> None:
    """`?masks=polygon` for segment; any other value is a 400 naming the parameter (other tasks ignore it)."""
    with server.client() as c:
        rle = c.post("/v1/detect", content=pngs[1], headers={"content-type": "image/png"}).json()
        poly = c.post("/v1/detect?masks=polygon", content=pngs[1], headers={"content-type": "image/png"}).json()
        bad = c.post("/v1/detect?masks=bitmap", content=pngs[1], headers={"content-type": "image/png"})
    assert bad.status_code == 400 and "`masks`" in bad.json()["error"]
    if server.task != "segment":  # type: ignore[attr-defined]
        assert poly == rle
        return
    rows_rle, rows_poly = rle["images"][0]["detections"], poly["images"][0]["detections"]
    assert [r["box"] for r in rows_rle] == [r["box"] for r in rows_poly]
    assert all("polygons" in r and "mask" not in r for r in rows_poly)
    traced = [r for r in rows_poly if r["polygons"]]
    assert traced, "some masks are large enough to trace"
    for r in traced:
        x1, y1, x2, y2 = r["box"]
        for p in r["polygons"]:
            assert len(p) >= 6 and len(p) % 2 == 0
            assert (
                min(p[0::2]) >= x1 - 2 and max(p[0::2]) <= x2 + 2 and min(p[1::2]) >= y1 - 2 and max(p[1::2]) <= y2 + 2
            )


def test_bad_input_per_task(server: Server, pngs: list[bytes]) -> None:
    """An output of another task is refused by name; a corrupt image fails its own request only, in a batch it
    shares with good ones; an undecodable pixel shape is refused by field as for detection."""
    task: str = server.task  # type: ignore[attr-defined]
    foreign = "boxes" if task == "classify" else "keypoints" if task != "pose" else "obb"
    corrupt = pngs[0][:-40] + b"\x00" * 28 + pngs[0][-12:]
    with server.client() as c:
        res = _v2(c, pngs[:1], [foreign])
        assert res.status_code == 400 and repr(foreign) in res.json()["error"], res.text
        shape = c.post(
            "/v2/models/yolo/infer",
            json={"inputs": [{"name": "images", "shape": [1, 4, 4, 4], "datatype": "UINT8", "data": [0] * 64}]},
        )
        assert shape.status_code == 400 and "shape" in shape.json()["error"]
        alone = c.post("/v1/detect", content=pngs[1], headers={"content-type": "image/png"}).json()
    results: dict[int, httpx.Response] = {}

    def send(i: int, body: bytes) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            results[i] = c.post("/v1/detect", content=body, headers={"content-type": "image/png"})

    threads = [threading.Thread(target=send, args=(i, b)) for i, b in enumerate([pngs[1], corrupt, pngs[1]])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results[0].json() == alone == results[2].json()
    assert results[1].status_code == 400 and "corrupt PNG" in results[1].json()["error"], results[1].text


def test_weights_of_another_task_end_the_server_with_exit_code_2(weights: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "yolo_workloads.cli", "serve", "--weights", weights["pose"], "--task", "segment",
         "--device", "cpu", "--port", "1"],
        check=False, env=offline_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "'pose'" in proc.stderr and "'segment'" in proc.stderr and weights["pose"] in proc.stderr


def test_weights_that_can_never_serve_are_refused_naming_the_file(tmp_path: Any) -> None:
    """Missing weights and a file that is no Ultralytics checkpoint end the server before it opens its socket
    (exit code 2: the operator's InvalidInput), with or without a task asked for; a read error of the volume is left
    to the server's own load."""
    import torch
    from yolo_workloads.contract import ModelSource, ServeConfig
    from yolo_workloads.serve.cli import check_model

    missing = ServeConfig(model=ModelSource(weights=str(tmp_path / "missing.pt")))
    for task in ("segment", None):
        assert check_model(missing, task) == f"serve: model weights {tmp_path / 'missing.pt'}: not found"
    junk = tmp_path / "junk.pt"
    torch.save({"conv.weight": torch.zeros(3)}, junk)
    said = check_model(ServeConfig(model=ModelSource(weights=str(junk))), None)
    assert said is not None and said.startswith(f"serve: model weights {junk}: not a checkpoint Ultralytics can load (")
    folder = tmp_path / "folder.pt"
    folder.mkdir()
    assert check_model(ServeConfig(model=ModelSource(weights=str(folder))), None) is not None  # not a file
    proc = subprocess.run(
        [sys.executable, "-m", "yolo_workloads.cli", "serve", "--weights", str(junk), "--device", "cpu", "--port", "1"],
        check=False, env=offline_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"model weights {junk}: not a checkpoint Ultralytics can load" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_configs_task_is_checked_as_the_flag_is(weights: dict[str, str], tmp_path: Any) -> None:
    """What the operator renders: `task` in the ServeConfig (from spec.task). A config without it serves whatever
    task the weights are for."""
    from yolo_workloads.contract import ModelSource, ServeConfig
    from yolo_workloads.serve.cli import expected_task

    config = tmp_path / "serve.yaml"
    config.write_text(f"model: {{weights: {weights['pose']}}}\ntask: segment\ndevice: cpu\nport: 1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "yolo_workloads.cli", "serve", "--config", str(config)],
        check=False, env=offline_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "'pose'" in proc.stderr and "'segment'" in proc.stderr
    plain = ServeConfig(model=ModelSource(weights=weights["pose"]))
    assert expected_task(plain, None) is None and expected_task(plain, "pose") == "pose"
    assert expected_task(ServeConfig.model_validate({**plain.model_dump(), "task": "obb"}), None) == "obb"
