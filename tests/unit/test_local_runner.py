"""The local runner's pure pieces: manifest loading and errors, configs moved onto this machine, reports, status."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import yaml
from yolo_operator.api import SpecError, YoloTrainJob, YoloTrainJobStatus
from yolo_operator.api.train_job import TuningStatus
from yolo_operator.lifecycle import train_job as lifecycle
from yolo_operator.local import report, serving
from yolo_operator.local.backend import JobObservation, LocalJob
from yolo_operator.local.cli import load_manifest
from yolo_operator.local.plots import read_results_csv
from yolo_operator.local.train_job import load_status, retry_status, save_status, step_observation
from yolo_operator.local.workdir import Machine, Workdir, parse_volumes, train_config, tune_config
from yolo_workloads.contract import TrialResult, TuneResult

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "manifests" / "samples" / "quickstart" / "yolotrainjob.yaml"


def _job(**spec: object) -> YoloTrainJob:
    base: dict[str, object] = {
        "model": {"architecture": "yolov8n.yaml"},
        "data": {"shapes": {"images": 40}},
        "train": {"imgsz": 64, "epochs": 2},
        "resources": {"gpus": 0, "cpu": 16, "memory": "64Gi"},
    }
    base.update(spec)
    return YoloTrainJob.model_validate({"metadata": {"name": "t"}, "spec": base})


def test_quickstart_sample_validates_and_runs_on_cpu() -> None:
    job = load_manifest(QUICKSTART, None)
    assert isinstance(job, YoloTrainJob)
    assert job.spec.resources.gpus == 0
    assert job.spec.tuning.enabled and job.spec.tuning.time_budget_seconds <= 90
    assert job.spec.data.shapes is not None and job.spec.data.shapes.images <= 400


def test_gpus_flag_overrides_the_spec(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(QUICKSTART.read_text())
    assert load_manifest(path, 2).spec.resources.gpus == 2


def test_invalid_manifest_lists_each_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    doc = yaml.safe_load(QUICKSTART.read_text())
    doc["spec"]["train"]["imgsz"] = 65
    doc["spec"]["model"]["architecture"] = "yolov9n.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(SpecError) as err:
        load_manifest(path, None)
    fields = [p.split(":")[0] for p in err.value.problems]
    assert fields == ["spec.model.architecture", "spec.train.imgsz"]


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_manifest(tmp_path / "missing.yaml", None)
    (tmp_path / "two.yaml").write_text("a: 1\n---\nb: 2\n")
    with pytest.raises(SpecError, match="exactly one manifest"):
        load_manifest(tmp_path / "two.yaml", None)


def test_configs_use_the_workdir_and_this_machines_budget(tmp_path: Path) -> None:
    job = _job()
    wd = Workdir(tmp_path / "w")
    machine = Machine(cpus=2, memory_bytes=8 * 2**30, gpu_product="cpu")
    tune = tune_config(job, wd, {}, machine)
    assert tune.cpu_budget == 2 and tune.memory_budget_bytes == 8 * 2**30  # capped from 16 CPUs / 64Gi
    assert tune.output_dir == str(wd.tuning.resolve())
    assert tune.termination_log == str(wd.tune_result.resolve())
    assert tune.data.root == str(wd.shapes.resolve())
    assert tune.gpus == 0 and tune.imgsz == 64
    choice = lifecycle.TrainChoice(batch=32, workers=8, amp=False, cache="ram")
    train = train_config(job, choice, wd, {}, machine)
    assert (train.batch, train.amp, train.cache) == (32, False, "ram")
    assert train.workers == 2  # no more dataloader processes than cores
    assert train.output_dir == str(wd.training.resolve())
    assert train.metrics_port is None


def test_volume_claims_need_a_local_folder(tmp_path: Path) -> None:
    job = _job(data={"volume": {"claimName": "datasets", "path": "coco/data.yaml"}})
    wd, machine = Workdir(tmp_path / "w"), Machine(2, None, "cpu")
    with pytest.raises(SpecError, match=r"spec\.data\.volume\.claimName: .*--volume datasets=DIR"):
        tune_config(job, wd, {}, machine)
    (tmp_path / "coco").mkdir()
    with pytest.raises(SpecError, match=r"spec\.data\.volume\.path: .* does not exist"):
        tune_config(job, wd, parse_volumes([f"datasets={tmp_path}"]), machine)
    (tmp_path / "coco" / "data.yaml").write_text("train: x\n")
    config = tune_config(job, wd, parse_volumes([f"datasets={tmp_path}"]), machine)
    assert config.data.yaml == str((tmp_path / "coco" / "data.yaml").resolve())
    with pytest.raises(SpecError, match="expected CLAIM=DIR"):
        parse_volumes(["datasets"])


def test_a_workdir_belongs_to_one_spec(tmp_path: Path) -> None:
    wd = Workdir(tmp_path)
    wd.prepare()
    wd.claim_spec(_job().spec.to_wire())
    wd.claim_spec(_job().spec.to_wire())  # the same spec again: fine (resume)
    with pytest.raises(SpecError, match=r"spec\.train\.epochs: differs"):
        wd.claim_spec(_job(train={"imgsz": 64, "epochs": 3}).spec.to_wire())


def test_status_round_trips_and_a_failed_run_keeps_only_the_measurement(tmp_path: Path) -> None:
    status = YoloTrainJobStatus(
        phase="Failed",
        message="boom",
        tuning=TuningStatus(batch=16, workers=2, amp=False, cache="none", source="Measured"),
    )
    path = tmp_path / "status.yaml"
    save_status(path, status)
    assert "imagesPerSecond" not in path.read_text()  # unset fields left out, wire names
    loaded = load_status(path)
    assert loaded == status
    retried = retry_status(status)
    assert retried.phase is None and retried.tuning == status.tuning
    path.write_text("phase: [not, a, phase]\n")
    assert load_status(path) is None


def test_step_observation_maps_local_facts() -> None:
    obs = step_observation(JobObservation("training", "failed", 1, "oops", restarts=2), "cpu")
    assert obs.state == lifecycle.StepState.FAILED
    assert obs.failure_reason == "BackoffLimitExceeded" and obs.restarts == 2 and obs.message == "oops"
    assert step_observation(JobObservation("tuning", "absent"), None).state == lifecycle.StepState.ABSENT


def _result() -> TuneResult:
    trials = [
        TrialResult(n=1, batch=8, workers=2, amp=False, cache="none", ips=50.0, state="ok"),
        TrialResult(n=2, batch=16, workers=2, amp=False, cache="none", ips=70.5, state="ok"),
        TrialResult(n=3, batch=64, workers=2, amp=False, cache="none", state="infeasible", error="out of memory"),
    ]
    return TuneResult(
        batch=16, workers=2, amp=False, cache="none", images_per_second=70.5, duration_seconds=33, trials=trials
    )


def test_trials_table_marks_the_chosen_trial() -> None:
    result = _result()
    assert report.chosen_trial(result) == result.trials[1]
    lines = report.trials_table(result).splitlines()
    assert lines[0].split() == ["trial", "batch", "workers", "amp", "cache", "images/s", "state", "note"]
    assert lines[3].split()[-2:] == ["ok", "*"]
    assert "infeasible" in lines[4] and "out of memory" in lines[4] and " - " in lines[4]
    assert "batch 16, workers 2" in report.tuning_summary(result, "Measured")


def test_results_csv_is_read_with_stripped_headers(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    path.write_text("epoch,  train/box_loss,metrics/mAP50-95(B)\n1, 1.5,0.1\n2,1.2,\n")
    columns = read_results_csv(path)
    assert columns["epoch"] == [1.0, 2.0]
    assert columns["train/box_loss"] == [1.5, 1.2]
    assert columns["metrics/mAP50-95(B)"][0] == 0.1 and columns["metrics/mAP50-95(B)"][1] != 0.1


def test_detections_are_described_one_per_line() -> None:
    answer = {"images": [{"detections": [{"box": [1, 2, 30, 40], "score": 0.91, "class_id": 2, "class_name": "x"}]}]}
    assert serving.describe_detections(answer).strip() == "x: 0.91 at [1, 2, 30, 40]"
    assert "no detections" in serving.describe_detections({"images": [{"detections": []}]})


def test_serve_config_for_a_train_job_runs_on_this_machine(tmp_path: Path) -> None:
    weights = tmp_path / "best.pt"
    svc = serving.service_for_train_job(_job(), str(weights))
    config = serving.local_serve_config(svc, weights, 8123)
    assert config.model.weights == str(weights.resolve())
    assert (config.host, config.port, config.device, config.half, config.imgsz) == ("127.0.0.1", 8123, "cpu", False, 64)


def test_local_job_runs_a_process_and_keeps_its_outcome(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real child process: its exit code and termination file become the observation, and a record keeps it."""
    script = tmp_path / "yolo-workload"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys, yaml\n"
        "cfg = yaml.safe_load(open(sys.argv[3]))\n"
        "open(cfg['termination_log'], 'w').write('done')\n"
        "sys.exit(cfg['code'])\n"
    )
    script.chmod(0o755)
    monkeypatch.setattr("yolo_operator.local.backend.workload_command", lambda: [str(script)])
    log = tmp_path / "msg"
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"termination_log": str(log), "code": 3}))
    job = LocalJob("training", "train", config, log, backoff_limit=1)
    assert job.observe().state == "absent"
    job.start()
    while (obs := job.observe()).state == "running":
        time.sleep(0.05)
    assert (obs.state, obs.exit_code, obs.termination_message, obs.restarts) == ("failed", 3, "done", 1)
    again = LocalJob("training", "train", config, log, backoff_limit=1)
    assert again.observe() == obs  # a second run on the same directory sees the outcome
    again.forget()
    assert LocalJob("training", "train", config, log).observe().state == "absent"


def test_an_input_error_is_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit code 2 (the workload's "your input is wrong") fails at once, as the Job's podFailurePolicy does."""
    script = tmp_path / "yolo-workload"
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.exit(2)\n")
    script.chmod(0o755)
    monkeypatch.setattr("yolo_operator.local.backend.workload_command", lambda: [str(script)])
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    job = LocalJob("training", "train", config, tmp_path / "msg", backoff_limit=3)
    job.start()
    while (obs := job.observe()).state == "running":
        time.sleep(0.05)
    assert (obs.state, obs.exit_code, obs.restarts) == ("failed", 2, 0)


def test_plots_are_png_files(tmp_path: Path) -> None:
    from yolo_operator.local import plots

    csv_path = tmp_path / "results.csv"
    csv_path.write_text("epoch,train/box_loss,metrics/mAP50-95(B)\n1,1.5,0.1\n2,1.2,0.2\n")
    written = [
        plots.plot_training(csv_path, tmp_path / "curves.png"),
        plots.plot_trials(_result().trials, tmp_path / "trials.png", _result().trials[1]),
    ]
    for path in written:
        assert path is not None and path.read_bytes()[:4] == b"\x89PNG"
    assert plots.plot_trials([], tmp_path / "none.png") is None
