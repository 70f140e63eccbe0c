"""The work directory of a local run, and the contract configs placed in it.

The controller renders configs with in-pod paths (`render.train_job.tune_config`/`train_config`); the local runner
reuses exactly those builders, so every spec field reaches the workload the same way, and then moves each path onto
this machine: generated data under the work directory, the run folder under it, termination messages as files in
it, volume claims mapped to local folders (`--volume CLAIM=DIR`), and the CPU and memory budgets capped by what
this machine has (the spec's requests are written for a cluster node).

Layout of a work directory::

    spec.json              the spec this directory belongs to (a different spec is refused)
    status.yaml            the status the operator would write; the memory across runs
    data/shapes/           the generated synthetic data set
    sources/               data and weights fetched by URI: links (data, weights.pt), fetch.yaml, cache/ (per
                           content: a second run, or another job given the same --workdir, downloads nothing)
    tuning/                tune.yaml, termination-log (the TuneResult), tune.log
    training/              train.yaml, termination-log (the TrainSummary), weights/, results.csv
    training-curves.png, tuning-trials.png
    yoloinferenceservice.yaml   a YoloInferenceService serving the weights (fromTrainJob), once succeeded
    serve.yaml, serve.log, detections.json, detections.png   with --serve
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yolo_workloads.contract import (
    DataSource,
    FetchConfig,
    FetchSource,
    ModelSource,
    TrainConfig,
    TuneConfig,
    TuningBudget,
    source_kind,
)

from yolo_operator.api.common import SpecError, VolumeFile
from yolo_operator.api.sources import DEFAULT_REGION, Source, is_archive, max_bytes, pvc_parts
from yolo_operator.api.sources import DataSource as DataSourceSpec
from yolo_operator.api.train_job import YoloTrainJob
from yolo_operator.render import train_job as render


@dataclass(frozen=True)
class Machine:
    """What this machine offers, bounding the budgets the spec asks for."""

    cpus: float
    memory_bytes: int | None
    gpu_product: str | None = None

    @classmethod
    def detect(cls, gpus: int) -> Machine:
        cpus = float(len(os.sched_getaffinity(0)))
        memory: int | None = None
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) * 1024
        except OSError:
            pass
        return cls(cpus, memory, gpu_product() if gpus > 0 else "cpu")


def gpu_product() -> str | None:
    """The first GPU's product name from nvidia-smi (no torch import here); None when it cannot be read."""
    import shutil
    import subprocess

    tool = shutil.which("nvidia-smi")
    if tool is None:
        return None
    try:
        out = subprocess.run(
            [tool, "--query-gpu=name", "--format=csv,noheader"], check=False, capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return None
    names = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    return names[0] if out.returncode == 0 and names else None


@dataclass(frozen=True)
class Workdir:
    root: Path

    @property
    def status(self) -> Path:
        return self.root / "status.yaml"

    @property
    def spec(self) -> Path:
        return self.root / "spec.json"

    @property
    def shapes(self) -> Path:
        return self.root / "data" / "shapes"

    @property
    def tuning(self) -> Path:
        return self.root / "tuning"

    @property
    def sources(self) -> Path:
        return self.root / "sources"

    @property
    def training(self) -> Path:
        return self.root / "training"

    @property
    def tune_result(self) -> Path:
        return self.tuning / "termination-log"

    @property
    def train_summary(self) -> Path:
        return self.training / "termination-log"

    def prepare(self) -> None:
        for folder in (self.root, self.tuning, self.training, self.shapes.parent):
            folder.mkdir(parents=True, exist_ok=True)

    def claim_spec(self, spec_wire: dict[str, Any]) -> None:
        """Bind the directory to this spec; refuse one written for another (a spec is immutable on a cluster)."""
        text = json.dumps(spec_wire, sort_keys=True, indent=1)
        if self.spec.exists():
            old = json.loads(self.spec.read_text())
            if old != spec_wire:
                changed = ", ".join(_diff(old, spec_wire, "spec")[:6])
                raise SpecError(
                    [
                        f"{changed}: differs from the run in {self.root}; a YoloTrainJob's spec is immutable, so "
                        "use another --workdir (or delete this one) for a changed spec"
                    ]
                )
            return
        self.spec.write_text(text + "\n")


def _diff(old: Any, new: Any, path: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            out += _diff(old.get(key), new.get(key), f"{path}.{key}")
        return out
    return [] if old == new else [path]


def _local_file(ref: VolumeFile, volumes: dict[str, Path], field: str) -> str:
    if ref.claim_name not in volumes:
        raise SpecError(
            [
                f"{field}.claimName: PersistentVolumeClaim {ref.claim_name!r} has no local folder; "
                f"pass --volume {ref.claim_name}=DIR"
            ]
        )
    path = volumes[ref.claim_name] / ref.path
    if not path.exists():
        raise SpecError(
            [f"{field}.path: {path} does not exist (claim {ref.claim_name} mapped to {volumes[ref.claim_name]})"]
        )
    return str(path.resolve())


def _claim_file(uri: str, volumes: dict[str, Path], field: str) -> str:
    claim, path = pvc_parts(uri)
    return _local_file(VolumeFile(claim_name=claim, path=path), volumes, field)


def fetch_source(field: str, source: Source, uri: str, link: Path) -> FetchSource:
    """What the controller's init container would fetch, with local paths; credentials from the environment
    (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), CAs from SSL_CERT_FILE (there is no Secret or ConfigMap here)."""
    return FetchSource(
        field=field,
        uri=uri,
        kind=source_kind(uri),
        sha256=source.sha256,
        max_bytes=max_bytes(source),
        link=str(link),
        endpoint=source.endpoint.rstrip("/") if source.endpoint else None,
        region=source.region or DEFAULT_REGION,
        credentials_env=source.credentials_secret is not None,
    )


def _model(job: YoloTrainJob, workdir: Workdir, volumes: dict[str, Path], fetches: list[FetchSource]) -> ModelSource:
    m = job.spec.model
    if m.weights is not None:
        return ModelSource(weights=_local_file(m.weights, volumes, "spec.model.weights"))
    if m.source is None:
        return ModelSource(architecture=m.architecture)
    if m.source.uri.startswith("pvc://"):
        return ModelSource(weights=_claim_file(m.source.uri, volumes, "spec.model.source"))
    link = workdir.sources.resolve() / "weights.pt"
    fetches.append(fetch_source("spec.model.source", m.source, m.source.uri, link))
    return ModelSource(weights=str(link))


def _source_data(
    source: DataSourceSpec, workdir: Workdir, volumes: dict[str, Path], fetches: list[FetchSource], classify: bool
) -> str:
    uri = source.uri
    if uri.startswith("pvc://"):
        path = _claim_file(uri, volumes, "spec.data.source")
        if not is_archive(uri):
            return path
        uri = Path(path).as_uri()
    link = workdir.sources.resolve() / "data"
    fetches.append(fetch_source("spec.data.source", source, uri, link))
    return str(link if classify else link / source.yaml)  # a classify set is its folder


def _local(
    job: YoloTrainJob, workdir: Workdir, volumes: dict[str, Path]
) -> tuple[ModelSource, DataSource, list[FetchSource]]:
    spec = job.spec
    fetches: list[FetchSource] = []
    model = _model(job, workdir, volumes, fetches)
    if spec.data.volume is not None:
        data = DataSource(yaml=_local_file(spec.data.volume, volumes, "spec.data.volume"))
    elif spec.data.source is not None:
        classify = spec.effective_task() == "classify"
        data = DataSource(yaml=_source_data(spec.data.source, workdir, volumes, fetches, classify))
    else:
        # The synthetic set exactly as render hands it to the pods (its validation split left to the contract's
        # default), generated under this workdir instead of the pod's emptyDir.
        rendered = render.tune_config(job).data
        data = DataSource.model_validate({**rendered.model_dump(), "root": str(workdir.shapes.resolve())})
    return model, data, fetches


def local_sources(job: YoloTrainJob, workdir: Workdir, volumes: dict[str, Path]) -> tuple[ModelSource, DataSource]:
    model, data, _ = _local(job, workdir, volumes)
    return model, data


def local_fetch_config(job: YoloTrainJob, workdir: Workdir, volumes: dict[str, Path]) -> FetchConfig | None:
    """What to fetch before a step runs (as the controller's init container would), or None: nothing by URI.
    Failures are written to the step's termination log, as the init container's message is the pod's."""
    _, _, fetches = _local(job, workdir, volumes)
    if not fetches:
        return None
    return FetchConfig(sources=fetches, cache_dir=str(workdir.sources.resolve() / "cache"))


def _capped(budget: float | None, have: float | None) -> float | None:
    if budget is None:
        return have
    return budget if have is None else min(budget, have)


def tune_config(job: YoloTrainJob, workdir: Workdir, volumes: dict[str, Path], machine: Machine) -> TuneConfig:
    """The controller's TuneConfig for this spec, with paths and budgets of this machine."""
    base = render.tune_config(job)
    model, data = local_sources(job, workdir, volumes)
    return TuneConfig.model_validate(
        {
            **base.model_dump(),
            **_machine_budgets(base, machine),
            "model": model.model_dump(),
            "data": data.model_dump(),
            "output_dir": str(workdir.tuning.resolve()),
            "termination_log": str(workdir.tune_result.resolve()),
        }
    )


def _machine_budgets(budget: TuningBudget, machine: Machine) -> dict[str, Any]:
    """Tuning's CPU and memory budgets, capped by this machine's."""
    memory = _capped(budget.memory_budget_bytes, machine.memory_bytes)
    return {
        "cpu_budget": _capped(budget.cpu_budget, machine.cpus),
        "memory_budget_bytes": int(memory) if memory is not None else None,
    }


def train_config(
    job: YoloTrainJob, choice: render.TunedSettings, workdir: Workdir, volumes: dict[str, Path], machine: Machine
) -> TrainConfig:
    """The controller's TrainConfig for this spec and choice, with local paths; no metrics port (a local run
    reads progress from results.csv, and a fixed port would clash between runs)."""
    base = render.train_config(job, choice, render.RenderOptions())
    model, data = local_sources(job, workdir, volumes)
    workers = base.workers
    if machine.cpus and workers > machine.cpus:
        workers = int(machine.cpus)  # more dataloader processes than cores only thrash
    return TrainConfig.model_validate(
        {
            **base.model_dump(),
            "model": model.model_dump(),
            "data": data.model_dump(),
            "workers": workers,
            "tuning": {**base.tuning.model_dump(), **_machine_budgets(base.tuning, machine)} if base.tuning else None,
            "output_dir": str(workdir.training.resolve()),
            "termination_log": str(workdir.train_summary.resolve()),
            "metrics_port": None,
        }
    )


def write_config(path: Path, config: TuneConfig | TrainConfig | Any) -> Path:
    """The config file the workload reads (YAML), as the controller puts it into a ConfigMap."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True), sort_keys=True))
    return path


def parse_volumes(pairs: list[str]) -> dict[str, Path]:
    """`--volume CLAIM=DIR` pairs; a bad one raises SpecError naming it."""
    volumes: dict[str, Path] = {}
    for pair in pairs:
        claim, sep, folder = pair.partition("=")
        if not sep or not claim or not folder:
            raise SpecError([f"--volume {pair}: expected CLAIM=DIR, e.g. --volume datasets=/srv/data"])
        if not Path(folder).is_dir():
            raise SpecError([f"--volume {pair}: {folder} is not a folder"])
        volumes[claim] = Path(folder)
    return volumes
