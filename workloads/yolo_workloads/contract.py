"""The configs the operator hands to workload pods, and the results pods hand back.

Both sides import these models: the operator renders a config into a ConfigMap and validates the JSON a pod
leaves in its termination message; the workload reads the config and writes the result. Pure: pydantic only.
Results that travel through a termination message must stay under Kubernetes' 4096-byte limit, so they are
compact; full details go to the output folder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Literal, NotRequired, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import TypedDict

TERMINATION_MESSAGE_LIMIT = 4096
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
Cache = Literal["none", "ram", "disk"]
Augmentation = Literal["cpu", "gpu"]
"""Where training images are augmented: Ultralytics' loader on the CPUs, or batched on the GPU (train/gpu_augment)."""
GPU_AUGMENTATION_TASKS: tuple[str, ...] = ("detect",)
"""Tasks whose training can augment on the GPU."""
NOT_ON_GPU_AUGMENTATION: tuple[str, ...] = ("copy_paste", "mixup", "cutmix", "bgr")
"""Ultralytics augmentation arguments the GPU path does not implement: above 0 they are refused with it."""
NOT_ON_GPU_SWITCHES: tuple[str, ...] = ("rect",)
"""Ultralytics switches the GPU path does not implement: true, they are refused with it (rectangular batches turn
Ultralytics' mosaic off and are not square; the GPU path mosaics square batches)."""
GPU_AUGMENTATION_LACKS = f"{', '.join(NOT_ON_GPU_AUGMENTATION)} above 0 or {', '.join(NOT_ON_GPU_SWITCHES)} true"
"""What the GPU path refuses, in words for the messages that refuse it."""
ShapesVariant = Literal["shapes", "crowded"]
BatchRuleName = Literal["defaults", "defaults_then_nbs", "nbs", "grouped", "any"]
Task = Literal["detect", "segment", "pose", "obb", "classify"]
"""Ultralytics' tasks, by the names its models report (`YOLO(...).task`); the default is `detect`."""
TASKS: tuple[Task, ...] = ("detect", "segment", "pose", "obb", "classify")
DEFAULT_TASK: Task = "detect"
TASK_SUFFIXES: dict[str, Task] = {"-seg": "segment", "-pose": "pose", "-obb": "obb", "-cls": "classify"}
"""How Ultralytics names a model of each task (`yolov8n-seg.yaml`, `yolo11n-pose.pt`): the suffix of the file's stem
(ultralytics.nn.tasks.guess_model_task); a name without one is a detection model."""
CONFIG_ERROR_EXIT_CODE = 2
"""Workloads exit 2 when their input is wrong (bad config, bad data set, weights of another task): a retry cannot
help, and the operator reports the termination message as an InvalidInput condition."""


def task_in_name(name: str) -> Task | None:
    """The task a model file's name announces (`yolov8n-seg.yaml` → segment), None when the name has no task suffix.

    Pure and torch-free, so the operator can check a spec without loading a model. Ultralytics matches the suffix
    anywhere in the stem (`-seg` in `yolov8n-seg-p6`); so do we."""
    stem = PurePosixPath(name.split("?", 1)[0]).stem
    return next((task for suffix, task in TASK_SUFFIXES.items() if suffix in stem), None)


def architecture_task(name: str) -> Task:
    """The task of an Ultralytics architecture YAML: its suffix's, else detect (the YAML decides the head)."""
    return task_in_name(name) or DEFAULT_TASK


def task_mismatch(task: Task, model: str, model_task: str) -> str | None:
    """The message refusing `model` (a model of `model_task`) for `task`, or None when they agree. Every side that
    checks (API, training, serving) words it the same way."""
    if task == model_task:
        return None
    return f"spec.task is {task} but the model {model} is a {model_task} model"


HEADLINE_METRIC: dict[Task, tuple[str, str]] = {
    "detect": ("map50to95", "mAP50-95"),
    "segment": ("mask_map50to95", "mask mAP50-95"),
    "pose": ("pose_map50to95", "pose mAP50-95"),
    "obb": ("map50to95", "mAP50-95"),
    "classify": ("top1", "top-1 accuracy"),
}
"""The figure each task is judged by: its FinalMetrics field and the words status and reports use for it."""


def _task_field() -> Task:
    """A task field that a dump leaves out when it is detect: configs and results rendered before tasks existed keep
    their exact text (a Job's pod template, hashed from its config, cannot change under a running Job)."""
    return Field(default=DEFAULT_TASK, exclude_if=lambda task: task == DEFAULT_TASK)


class ContractModel(BaseModel):
    """Strict on both ends: a typo in a rendered config is a bug, not something to ignore."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSource(ContractModel):
    """An Ultralytics architecture YAML (random init) or a path to `.pt` weights. Exactly one."""

    architecture: str | None = None
    weights: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.architecture is None) == (self.weights is None):
            raise ValueError("model: set exactly one of architecture or weights")
        return self

    @property
    def ref(self) -> str:
        """What to hand to `ultralytics.YOLO(...)`."""
        return self.architecture or self.weights or ""


SHAPES_VAL_FRACTION = 5
"""A synthetic set that names no validation count gets a fifth as many validation images as training images."""
SHAPES_MIN_VAL_IMAGES = 2
"""...and at least two, so that mAP means something."""


def default_val_images(images: int) -> int:
    """Validation images of a synthetic set of `images` training images that names none: the one default the
    cluster's pods (render leaves `val_images` unset) and the local runner generate by, as the API documents."""
    return max(SHAPES_MIN_VAL_IMAGES, images // SHAPES_VAL_FRACTION)


class ShapesSpec(ContractModel):
    """A synthetic data set, generated into `DataSource.root` when absent (datasets.shapes)."""

    images: int = Field(ge=1)
    val_images: int | None = Field(default=None, ge=1)
    """Validation images; unset: `default_val_images(images)`."""
    imgsz: int = Field(default=640, ge=32)
    seed: int = 0
    variant: ShapesVariant = "shapes"
    """`shapes`: a few large shapes, 6 classes. `crowded`: many small, overlapping shapes, 20 classes (every task but
    classify)."""
    task: Task = _task_field()
    """The labels to write: boxes (detect), polygons (segment), keypoints (pose), rotated boxes (obb), or class
    folders (classify)."""

    @model_validator(mode="after")
    def _task_variant(self) -> Self:
        if self.task == "classify" and self.variant != "shapes":
            raise ValueError(f"shapes: the {self.variant} variant has many objects an image, none for classify")
        return self


class DataSource(ContractModel):
    """Where the data set is: a dataset YAML, or the shapes set to generate under `root` (once)."""

    yaml: str | None = None
    shapes: ShapesSpec | None = None
    root: str | None = None
    """Folder the shapes set is generated in (its YAML is `root/data.yaml`)."""

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.yaml is None) == (self.shapes is None):
            raise ValueError("data: set exactly one of yaml or shapes")
        if self.shapes is not None and self.root is None:
            raise ValueError("data.root is required with data.shapes")
        return self

    def yaml_path(self) -> Path:
        """What Ultralytics takes as `data`: the data set's YAML, or for a generated classification set its folder
        (Ultralytics' classifier reads class folders `train/<class>/`, `val/<class>/`, not a YAML)."""
        if self.yaml:
            return Path(self.yaml)
        root = Path(self.root or ".")
        return root if self.shapes is not None and self.shapes.task == "classify" else root / "data.yaml"


def gpu_augmentation_lacks(args: Mapping[str, object]) -> list[str]:
    """The augmentations in Ultralytics train arguments that the GPU path does not implement, as `name: value`."""
    numbers = [f"{n}: {v}" for n in NOT_ON_GPU_AUGMENTATION if isinstance(v := args.get(n), int | float) and v > 0]
    return numbers + [f"{n}: true" for n in NOT_ON_GPU_SWITCHES if args.get(n) is True]


def gpu_augmentation_problem(task: str, extra_args: Mapping[str, object]) -> str | None:
    """Why `augmentation: gpu` cannot train this (None: it can): the task, or an augmentation it lacks."""
    if task not in GPU_AUGMENTATION_TASKS:
        return f"augmentation gpu supports task {', '.join(GPU_AUGMENTATION_TASKS)}, not {task}: use cpu"
    if lacking := gpu_augmentation_lacks(extra_args):
        return f"augmentation gpu does not implement {', '.join(lacking)}: leave them out or use augmentation cpu"
    return None


def _check_data_task(task: Task, data: DataSource) -> None:
    """A generated set must be labelled for the task trained on it."""
    if data.shapes is not None and data.shapes.task != task:
        raise ValueError(f"data.shapes.task is {data.shapes.task} but task is {task}: generate the task's labels")


class IntRange(ContractModel):
    min: int = Field(ge=0)
    max: int = Field(ge=0)


class SearchSpace(ContractModel):
    """What tuning may vary. A fixed value (from the spec) pins that dimension."""

    batch: IntRange = IntRange(min=8, max=256)
    workers: IntRange = IntRange(min=2, max=16)
    amp: list[bool] = [True, False]
    cache: list[Cache] = ["none", "ram"]
    fixed_batch: int | None = None
    fixed_workers: int | None = None
    fixed_amp: bool | None = None
    fixed_cache: Cache | None = None
    batch_rule: BatchRuleName = "defaults"
    """Which batch sizes keep the defaults' optimizer steps (tune.trajectory): `defaults` (batch 16, warm-up
    included), `defaults_then_nbs` (16 through warm-up, then up to nbs), `nbs` (up to nbs: the same steps after
    warm-up only), `grouped` (up to nbs, batch norm over groups of 16: trials and training normalise so), `any`."""
    nbs: int = Field(default=64, ge=1)
    """Ultralytics' nominal batch size the training will use (the user's `nbs`, else 64)."""
    warmup_epochs: float = Field(default=3.0, ge=0)
    """Ultralytics' warm-up the training will use (the user's `warmup_epochs`, else 3)."""
    augmentation: list[Augmentation] | None = None
    """Where trials may augment (TrainConfig.augmentation), tuning to choose: `gpu` is tried only on a CUDA GPU.
    None: only where TuneConfig.augmentation says (a config's text stays what it was for every job that does not
    offer a choice)."""


class TuningBudget(ContractModel):
    """What tuning may vary and how long it may take: the same in its own pod (TuneConfig) and inside the training
    process (TrainConfig.tuning)."""

    search: SearchSpace = SearchSpace()
    max_trials: int = Field(default=12, ge=1)
    time_budget_seconds: float = Field(default=120, gt=0)
    cpu_budget: float | None = None
    """CPUs the container may use; read from its cgroup quota when unset."""
    memory_budget_bytes: int | None = None
    """Memory the container may use; read from its cgroup limit when unset."""
    budget_share: float = Field(default=0.1, gt=0, le=1)
    """Share of the estimated training time tuning may spend (at least `min_budget_seconds`)."""
    min_budget_seconds: float = Field(default=30, gt=0)


class TuneConfig(TuningBudget):
    """Input of `yolo-workload tune`."""

    model: ModelSource
    task: Task = _task_field()
    """The model's task: trials run that task's trainer; weights of another task are refused (exit 2)."""
    data: DataSource
    imgsz: int = Field(default=640, ge=32)
    gpus: int = Field(default=1, ge=0)
    output_dir: str
    termination_log: str = DEFAULT_TERMINATION_LOG
    seed: int = 0
    epochs: int | None = Field(default=None, ge=1)
    """Epochs the tuned training will run: with the first trial's speed, it sizes the budget (None: the cap only)."""
    cuda_graphs: bool = True
    """Replay the model's training forward and backward as CUDA graphs on one GPU (train/graphs.py): the same
    computation with far fewer kernel launches; a capture that fails, a CPU or several GPUs train as before. With
    them, the step does not wait for the GPU to print its loss or pad its targets (train/host_waits.py). Trials
    measure what training will run."""
    augmentation: Augmentation = "cpu"
    """Where trials augment their images: as training will (TrainConfig.augmentation). When `search.augmentation`
    is set, tuning chooses among those instead."""

    @model_validator(mode="after")
    def _data_task(self) -> Self:
        _check_data_task(self.task, self.data)
        return self


class TrialResult(ContractModel):
    """One tuning trial. Field names are short: a dozen of these must fit a termination message."""

    n: int
    batch: int
    workers: int
    amp: bool
    cache: Cache
    ips: float | None = None
    """Steady-state training images/s; None when the trial did not complete."""
    state: Literal["ok", "infeasible", "pruned"]
    error: str | None = Field(default=None, max_length=120)
    repeat: bool | None = None
    """True when this trial re-measured an earlier setting (the best two were within noise of each other)."""
    aug: Augmentation | None = None
    """`gpu` when the trial augmented on the GPU (None: on the CPUs, Ultralytics' loader)."""


class TuneResult(ContractModel):
    """Output of `yolo-workload tune`: the chosen settings and every trial."""

    batch: int = Field(ge=1)
    workers: int = Field(ge=0)
    amp: bool
    cache: Cache
    augmentation: Augmentation | None = None
    """`gpu` when the chosen setting augmented on the GPU (chosen among both, or the config's own); None: on the
    CPUs, Ultralytics' loader. Training takes the spec's own value first."""
    images_per_second: float | None = Field(default=None, ge=0)
    """Measured for the chosen setting; None when no trial ran (the bounds allowed one setting only)."""
    duration_seconds: float = Field(ge=0)
    trials: list[TrialResult]
    gpu_product: str | None = None
    """e.g. NVIDIA H100 80GB HBM3; None on CPU."""
    cpu_budget: float | None = None
    device: str = "cpu"
    reason: str | None = Field(default=None, max_length=400)
    """Why this setting: the batch rule, the objective, the budget, any repeats (shown in the job's status)."""


TRAIN_METRICS_PORT = 9090
"""Where a training pod serves its Prometheus metrics (`TrainConfig.metrics_port`, the operator's default
`workload_metrics_port`)."""
METRICS_PATH = "/metrics"
"""Prometheus text of every workload server (training and serving pods)."""
LIVE_PATH = "/v2/health/live"
"""The serving pod's liveness (Open Inference Protocol v2)."""
READY_PATH = "/v2/health/ready"
"""The serving pod's readiness: 200 once the model is loaded and warmed, 503 before and while draining."""
DETECT_PATH = "/v1/detect"
"""Images in, the task's JSON answer out (`DetectAnswer`); `/v1/predict` is its alias."""

TRAIN_EPOCH = "yolo_train_epoch"
TRAIN_EPOCHS_TOTAL = "yolo_train_epochs_total"
TRAIN_IMAGES_PER_SECOND = "yolo_train_images_per_second"
TRAIN_MAP50_95 = "yolo_train_map50_95"
"""Boxes; absent for classify."""
TRAIN_ACCURACY = "yolo_train_accuracy"
"""The task's headline figure (HEADLINE_METRIC)."""
SERVE_QUEUE_DEPTH = "yolo_serve_queue_depth"
"""Images accepted and waiting for the device: an autoscaling metric (`queueDepth`)."""
SERVE_GPU_UTILIZATION_PERCENT = "yolo_serve_gpu_utilization_percent"
"""NVML utilisation of the serving GPU, 0-100: an autoscaling metric (`gpuUtilization`)."""
# The metric names the operator reads (status.progress, autoscaling); the workloads' metrics modules define them
# with these names and add their own (losses, request counters, GPU memory) that only dashboards read.


RESERVED_TRAIN_ARGS: frozenset[str] = frozenset(
    ("task", "mode", "model", "data", "epochs", "patience", "batch", "imgsz", "save", "save_period", "cache",
     "device", "workers", "project", "name", "exist_ok", "optimizer", "seed", "resume", "amp", "lr0", "save_dir")
)  # fmt: skip
"""Ultralytics train arguments the workload sets itself (from spec.train, spec.tuning, spec.output), so
`TrainConfig.extra_args` may not name them: the API refuses them at `kubectl apply`, `yolo-workload train` with
exit code 2. All but `save_dir` are keys of Ultralytics' `cfg/default.yaml`; `save_dir` is no default key, but the
trainer reads it from its cfg (the workload points it at `output_dir`)."""
RESERVED_NON_DEFAULT_ARGS: frozenset[str] = frozenset({"save_dir"})
"""The reserved arguments that are no key of Ultralytics' `cfg/default.yaml`."""


class TrainConfig(ContractModel):
    """Input of `yolo-workload train`."""

    model: ModelSource
    task: Task = _task_field()
    """The model's task: training runs that task's trainer; weights of another task are refused (exit 2)."""
    data: DataSource
    imgsz: int = Field(default=640, ge=32)
    epochs: int = Field(default=100, ge=1)
    patience: int = 100
    optimizer: str = "auto"
    lr0: float = 0.01
    seed: int = 0
    batch: int = 16
    workers: int = 8
    amp: bool = True
    cache: Cache = "none"
    gpus: int = Field(default=1, ge=0)
    save_period: int = 1
    warmup_batch: int | None = Field(default=None, ge=1)
    """Batch of the warm-up epochs when it differs from `batch` (single GPU): training runs them at this batch, then
    resumes from that checkpoint at `batch`, so warm-up takes the defaults' optimizer steps (tune.trajectory)."""
    cuda_graphs: bool = True
    """Replay the model's training forward and backward as CUDA graphs on one GPU (train/graphs.py): the same
    computation with far fewer kernel launches; a capture that fails, a CPU or several GPUs train as before. With
    them, the step does not wait for the GPU to print its loss or pad its targets (train/host_waits.py)."""
    augmentation: Augmentation = "cpu"
    """Where training images are augmented (train/gpu_augment.py for `gpu`): the same transforms either way."""
    norm_batch: int | None = Field(default=None, ge=2)
    """Batch normalisation over groups of this many images of each batch (train/norm_groups.py), so a larger batch
    normalises as this one would (single GPU; a batch that is a multiple of it). None: over the whole batch."""
    extra_args: dict[str, object] = {}
    output_dir: str
    """Run folder: `weights/last.pt` and `weights/best.pt` land here; a restart resumes from last.pt."""
    metrics_port: int | None = TRAIN_METRICS_PORT
    termination_log: str = DEFAULT_TERMINATION_LOG
    tuning: TuningBudget | None = None
    """Tune inside this process before training (tune/in_training.py): each trial is the training's own trainer
    and the last one goes on as the training, so no second process, data load or CUDA start is paid. Tuning's
    choice then replaces batch, workers, amp, cache, augmentation (unless `search.augmentation` is None: this
    config's own), norm_batch and warmup_batch; it is reported in TrainSummary.tuning. A single GPU or the CPU
    (several GPUs train in DDP subprocesses: tune in a pod of its own). A restart that finds a checkpoint resumes it
    with the choice recorded beside it."""

    @model_validator(mode="after")
    def _data_task(self) -> Self:
        _check_data_task(self.task, self.data)
        if self.tuning is not None and self.gpus > 1:
            raise ValueError("tuning: tuning inside training needs one GPU or the CPU (gpus <= 1)")
        if self.augmentation == "gpu" and (problem := gpu_augmentation_problem(self.task, self.extra_args)):
            raise ValueError(problem)
        return self


class FinalMetrics(ContractModel):
    """The final validation of a run. Box figures (Ultralytics' `(B)` keys) for every task that has boxes (all but
    classify), and each task's own beside them: masks `(M)`, keypoints `(P)`, top-1/top-5 accuracy."""

    map50to95: float | None = None
    map50: float | None = None
    precision: float | None = None
    recall: float | None = None
    mask_map50to95: float | None = None
    mask_map50: float | None = None
    pose_map50to95: float | None = None
    pose_map50: float | None = None
    top1: float | None = None
    top5: float | None = None

    def headline(self, task: Task) -> float | None:
        """The value of the task's HEADLINE_METRIC."""
        value = getattr(self, HEADLINE_METRIC[task][0])
        return None if value is None else float(value)

    @classmethod
    def from_ultralytics(cls, values: dict[str, float | None]) -> FinalMetrics:
        """From Ultralytics' metric keys (a validator's results, a results.csv row); absent keys stay None."""
        return cls(**{name: values.get(key) for name, key in ULTRALYTICS_METRIC_KEYS.items()})


def headline_key(task: Task) -> str:
    """The Ultralytics metric key of the task's headline figure (`metrics/mAP50-95(M)` for segment)."""
    return ULTRALYTICS_METRIC_KEYS[HEADLINE_METRIC[task][0]]


ULTRALYTICS_METRIC_KEYS: dict[str, str] = {
    "map50to95": "metrics/mAP50-95(B)",
    "map50": "metrics/mAP50(B)",
    "precision": "metrics/precision(B)",
    "recall": "metrics/recall(B)",
    "mask_map50to95": "metrics/mAP50-95(M)",
    "mask_map50": "metrics/mAP50(M)",
    "pose_map50to95": "metrics/mAP50-95(P)",
    "pose_map50": "metrics/mAP50(P)",
    "top1": "metrics/accuracy_top1",
    "top5": "metrics/accuracy_top5",
}
"""FinalMetrics' fields by the key Ultralytics' validators (and results.csv) give them."""


class TrainSummary(ContractModel):
    """Output of `yolo-workload train`."""

    best_weights: str
    last_weights: str
    results_dir: str
    epochs_completed: int = Field(ge=0)
    task: Task = _task_field()
    """The task of the trained weights (left out of the message when detect)."""
    metrics: FinalMetrics = FinalMetrics()
    images_per_second: float | None = None
    resumed: bool = False
    tuning: TuneResult | None = None
    """What tuning inside the training process chose (TrainConfig.tuning; trials trimmed to fit the message)."""


ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
"""Archives a data source may be, unpacked by `yolo-workload fetch`."""
SourceKind = Literal["file", "archive", "tree"]
SOURCE_SCHEMES = ("s3://", "https://", "http://", "file://")
"""What `yolo-workload fetch` reads; `pvc://` never reaches it (the operator mounts the claim instead)."""
SOURCE_ERROR_EXIT_CODE = CONFIG_ERROR_EXIT_CODE
"""`yolo-workload fetch` exits 2 (wrong input) when the source itself is wrong (checksum, 403, missing key,
oversize, unsafe archive): retrying cannot help. Transient failures (unreachable, truncated after retries) exit 1."""


def source_kind(uri: str) -> SourceKind:
    """A URI ending in `/` names a folder (an S3 prefix), one ending in an archive suffix an archive to unpack,
    anything else a single file."""
    path = uri.split("?", 1)[0].lower()
    if path.endswith("/"):
        return "tree"
    return "archive" if path.endswith(ARCHIVE_SUFFIXES) else "file"


class FetchSource(ContractModel):
    """One source `yolo-workload fetch` brings into the pod (or work directory) before the workload starts."""

    field: str
    """The spec field that named it (`spec.data.source`): every failure message starts with it and the URI."""
    uri: str
    """`s3://bucket/key`, `s3://bucket/prefix/`, `https://host/path` or `file:///path`."""
    kind: SourceKind
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """Expected SHA-256 of the downloaded file or archive; it also keys the cache, so a hit needs no network."""
    max_bytes: int = Field(ge=1)
    """Largest download (all objects of a prefix together) and largest unpacked archive."""
    link: str
    """Where the fetched file or folder appears: a symbolic link into the cache, replaced atomically. For an
    archive or prefix whose only entry is a folder, the link names that folder."""
    endpoint: str | None = None
    """S3 endpoint URL (`https://minio.example:9000`); AWS's regional endpoint when unset."""
    region: str = "us-east-1"
    """S3 region the request is signed for."""
    ca_file: str | None = None
    """PEM bundle of CAs to trust for https (S3 endpoint or HTTPS source) instead of the system's."""
    credentials_dir: str | None = None
    """Folder holding `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optionally `AWS_SESSION_TOKEN` files (a
    mounted Secret)."""
    credentials_env: bool = False
    """Read the same names from the environment instead (the local runner)."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.uri.startswith(SOURCE_SCHEMES):
            raise ValueError(f"{self.field}: uri must start with one of {', '.join(SOURCE_SCHEMES)}")
        if self.sha256 is not None and self.kind == "tree":
            raise ValueError(f"{self.field}: sha256 names one file; a prefix (ending in '/') has none")
        return self


class FetchConfig(ContractModel):
    """Input of `yolo-workload fetch`."""

    sources: list[FetchSource] = Field(min_length=1)
    cache_dir: str
    """Per-content cache shared by the pods that mount it: `<cache_dir>/<key>/` entries appear complete or not at
    all (built under a temporary name, then renamed)."""
    attempts: int = Field(default=3, ge=1, le=10)
    """Tries of each download on transient failures (unreachable endpoint, truncated transfer, 5xx)."""
    timeout_seconds: float = Field(default=30, gt=0)
    """Connect and read timeout of each request."""
    termination_log: str = DEFAULT_TERMINATION_LOG


class ServeTuningConfig(ContractModel):
    enabled: bool = False
    latency_slo_ms: float = 100
    trial_seconds: float = Field(default=1.0, gt=0)
    """Length of each max_batch_size x max_queue_delay_ms trial of the start-up sweep."""


class ServeConfig(ContractModel):
    """Input of `yolo-workload serve`."""

    model_name: str = "yolo"
    model: ModelSource
    task: Task = _task_field()
    """The task the service answers for; weights of another task are refused at start."""
    imgsz: int = Field(default=640, ge=32)
    half: bool = True
    max_batch_size: int = Field(default=32, ge=1)
    max_queue_delay_ms: float = Field(default=5, ge=0)
    max_queue_size: int = Field(default=512, ge=1)
    conf: float = Field(default=0.25, ge=0, le=1)
    iou: float = Field(default=0.7, ge=0, le=1)
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=1, le=65535)
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    """Request body limit, whether the body comes with a Content-Length, chunked or multipart (413 over it)."""
    max_request_decoded_bytes: int = Field(default=1024**3, ge=1)
    """Decoded pixel bytes one request may ask for (413 over it), counted from image headers before decoding."""
    max_batch_decoded_bytes: int = Field(default=512 * 1024**2, ge=1)
    """Decoded pixel bytes one device batch may hold: batches close early to stay under it, and an image that alone
    is larger is refused with 413. The server decodes at most two batches at once."""
    device: str | None = None
    """`cuda:0`, `cpu`; the first GPU when present otherwise."""
    tuning: ServeTuningConfig = ServeTuningConfig()
    workers: int = Field(default=1, ge=1, le=16)
    """HTTP server processes sharing the GPU, each with its own model copy and batcher (one process is bound by
    one core of Python at a few hundred to ~1,000 requests/s)."""
    termination_log: str = DEFAULT_TERMINATION_LOG
    """Where a server that refuses its input (exit code 2) says why: the pod's termination message."""


class RleMask(TypedDict):
    """COCO's uncompressed RLE of a segment mask: column-major runs, zeros first (`pycocotools.mask.frPyObjects`)."""

    size: list[int]
    """[height, width] of the image."""
    counts: list[int]


class DetectionAnswer(TypedDict):
    """One object of a `/v1/detect` answer. Detection's rows hold the first four keys only (its historical shape);
    the other tasks add theirs."""

    box: list[float]
    """[x1, y1, x2, y2] in the image's own pixels."""
    score: float
    class_id: int
    class_name: str
    obb: NotRequired[list[float]]
    """obb: [cx, cy, w, h, angle] (radians); `box` is the axis-aligned box around it."""
    keypoints: NotRequired[list[list[float]]]
    """pose: [x, y, visibility] per keypoint, in image pixels."""
    mask: NotRequired[RleMask]
    """segment, by default."""
    polygons: NotRequired[list[list[float]]]
    """segment with `?masks=polygon`: outer contours [x1, y1, x2, y2, ...] in image pixels."""


class ClassificationAnswer(TypedDict):
    """One of the top 5 classes of a classify model's `/v1/detect` answer, best first."""

    class_id: int
    class_name: str
    score: float


class ImageAnswer(TypedDict, total=False):
    """The answer for one image: `detections` for every task with boxes, `classifications` for classify."""

    detections: list[DetectionAnswer]
    classifications: list[ClassificationAnswer]


class DetectAnswer(TypedDict):
    """The JSON body `POST /v1/detect` answers: one entry of `images` per uploaded image, in upload order. Plain
    dicts on the wire and in the server (no per-object validation cost); a client validates with
    `pydantic.TypeAdapter(DetectAnswer)`."""

    model: str
    task: NotRequired[Task]
    """Left out for detect (its answer keeps its historical shape, byte for byte)."""
    images: list[ImageAnswer]


def encode_result(result: BaseModel) -> str:
    """JSON for a termination message, checked against Kubernetes' size limit."""
    text = result.model_dump_json(exclude_none=True)
    if len(text.encode()) > TERMINATION_MESSAGE_LIMIT:
        raise ValueError(f"result is {len(text.encode())} bytes, over the {TERMINATION_MESSAGE_LIMIT}-byte limit")
    return text


def encode_with_trials(tuning: TuneResult, message: Callable[[TuneResult], BaseModel]) -> str:
    """`message(tuning)` as a termination message with all of tuning's trials if they fit, else its fastest ones
    (a quarter fewer at a time, in their order; the chosen setting's figure stays in the result itself)."""
    trials = list(tuning.trials)
    while True:
        try:
            return encode_result(message(tuning.model_copy(update={"trials": trials})))
        except ValueError:
            if len(trials) <= 1:
                trials = []
                return encode_result(message(tuning.model_copy(update={"trials": trials})))
            ranked = sorted(trials, key=lambda t: -(t.ips or -1.0))
            trials = sorted(ranked[: max(1, len(ranked) * 3 // 4)], key=lambda t: t.n)
