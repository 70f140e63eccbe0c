"""The YoloTrainJob kind: tune, then train, a YOLO model (YOLOv8, YOLO11, YOLO26; detection, segmentation, pose,
oriented boxes or classification) on the cluster's GPUs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, WithJsonSchema, field_validator
from pydantic_core import PydanticCustomError
from yolo_workloads.contract import (
    DEFAULT_TASK,
    GPU_AUGMENTATION_LACKS,
    GPU_AUGMENTATION_TASKS,
    NOT_ON_GPU_AUGMENTATION,
    NOT_ON_GPU_SWITCHES,
    TASK_SUFFIXES,
    Augmentation,
    Task,
    architecture_task,
    gpu_augmentation_lacks,
    gpu_augmentation_problem,
)

from yolo_operator.api.common import (
    API_VERSION,
    NAME_RULE,
    ApiModel,
    Condition,
    ModelVolume,
    Name,
    ObjectMeta,
    Resources,
    StatusModel,
    VolumeFile,
    defaulted,
    relative_path_rule,
)
from yolo_operator.api.pod import PodOverrides
from yolo_operator.api.rules import Rule, exactly_one, immutable, task_cel
from yolo_operator.api.sources import DataSource, SourceCache, WeightsSource
from yolo_operator.api.ultralytics_args import (
    extra_arg_problem,
    extra_args_rules,
    extra_args_schema,
    reserved_problem,
)

ARCHITECTURE_PATTERN = rf"^yolo(v8|11|26)[nsmlx]({'|'.join(TASK_SUFFIXES)})?\.yaml$"
"""The architecture YAMLs Ultralytics 8.4 ships (ultralytics/cfg/models/{v8,11,26}), at scales n, s, m, l, x, for
each task (`yolov8n.yaml` detects, `yolov8n-seg.yaml` segments; contract.TASK_SUFFIXES)."""
TrainPhase = Literal["Pending", "Tuning", "Training", "Succeeded", "Failed", "Suspended"]


class TrainModel(ApiModel):
    """What to train: an architecture built from scratch, or weights to fine-tune (from a volume or a URI).
    Exactly one."""

    architecture: Annotated[str, StringConstraints(pattern=ARCHITECTURE_PATTERN, max_length=32)] | None = None
    """An Ultralytics architecture YAML, `yolov8n.yaml`, `yolo11s.yaml`, `yolo26m.yaml` (scales n, s, m, l, x), with
    the task's suffix for other tasks (`yolov8n-seg.yaml`, `yolo11n-pose.yaml`, `yolov8n-obb.yaml`,
    `yolov8n-cls.yaml`): random initial weights, nothing downloaded."""
    weights: ModelVolume | None = None
    """Initial weights (`.pt`) on a volume, for fine-tuning."""
    source: WeightsSource | None = None
    """Initial weights (`.pt`) by URI (`s3://`, `https://`, `pvc://`), for fine-tuning: Ultralytics builds the
    checkpoint's architecture with the data set's classes and transfers every weight whose shape matches."""

    __rules__ = (exactly_one("architecture", "weights", "source"),)


class ShapesData(ApiModel):
    """The built-in synthetic data set: coloured shapes on noise, generated in the pod; no download."""

    images: int = Field(default=1000, ge=8, le=1_000_000)
    """Number of training images (a fifth as many validation images are added)."""
    seed: int = Field(default=0, ge=0)
    """Seed of the generator: the same seed gives the same images."""
    variant: Literal["shapes", "crowded"] = "shapes"
    """`shapes`: one to six large shapes of 6 classes an image, labelled for the job's task (boxes, outlines,
    keypoints, rotated boxes, or one shape an image in class folders). `crowded` (every task but classify): harder,
    20 to 60 small shapes of 20 classes (5 forms in 4 colours) an image, overlapping one another, so that differences
    in convergence show; masks, keypoints' visibility and rotated boxes follow what stays visible."""


class TrainData(ApiModel):
    """The data set: a dataset YAML on a volume, one by URI, or the synthetic shapes set. Exactly one."""

    volume: VolumeFile | None = None
    """An Ultralytics dataset YAML on a PersistentVolumeClaim; its paths are relative to the YAML's folder."""
    source: DataSource | None = None
    """A data set in Ultralytics' layout by URI: an archive (`.zip`, `.tar.gz`) on S3 or HTTPS, an S3 prefix
    ending in `/`, or on a claim (`pvc://`); fetched once before tuning, its class names are the model's."""
    shapes: ShapesData | None = None
    """The built-in synthetic set."""

    __rules__ = (exactly_one("volume", "source", "shapes"),)


def _gpu_args_cel(owner: str) -> str:
    """CEL: `owner`'s extraArgs set none of the augmentations the GPU path lacks above 0."""
    lacking = " && ".join(
        [f"(!has({owner}.extraArgs.{n}) || {owner}.extraArgs.{n} <= 0.0)" for n in NOT_ON_GPU_AUGMENTATION]
        + [f"(!has({owner}.extraArgs.{n}) || !{owner}.extraArgs.{n})" for n in NOT_ON_GPU_SWITCHES]
    )
    return f"!has({owner}.extraArgs) || {lacking}"


ULTRALYTICS_LR0 = 0.01
"""Ultralytics' default lr0, and ours."""

CHOSEN_BY_AUTO_OPTIMIZER = ("warmup_bias_lr",)
"""extraArgs that Ultralytics' `optimizer=auto` overwrites (build_optimizer), beside lr0."""


def _auto_optimizer_rule() -> Rule:
    """With optimizer auto, Ultralytics' build_optimizer sets lr0 and warmup_bias_lr itself and only logs that it
    ignored the user's: a value set there would go unused, so it is refused naming what to do instead."""
    kept = " && ".join(f"!has(self.extraArgs.{name})" for name in CHOSEN_BY_AUTO_OPTIMIZER)
    return Rule(
        cel=f"!has(self.optimizer) || self.optimizer != 'auto' || ((!has(self.lr0) || self.lr0 == {ULTRALYTICS_LR0})"
        f" && (!has(self.extraArgs) || ({kept})))",
        message="optimizer auto (the default) chooses lr0 and warmup_bias_lr itself and ignores values set for "
        "them: name the optimizer (SGD, AdamW, ...) to train with your lr0 or extraArgs.warmup_bias_lr, or leave "
        "them out",
        check=lambda t: (
            t.optimizer != "auto"
            or (t.lr0 == ULTRALYTICS_LR0 and not set(CHOSEN_BY_AUTO_OPTIMIZER) & set(t.extra_args or {}))
        ),
        field="optimizer",
    )


class TrainSettings(ApiModel):
    """Ultralytics training arguments. batch, workers, amp and cache are chosen by tuning unless set here."""

    epochs: int = Field(default=100, ge=1, le=10_000)
    """Epochs to train."""
    imgsz: int = Field(default=640, ge=32, le=4096, multiple_of=32)
    """Training image size in pixels; a multiple of 32 (the model's largest stride)."""
    patience: int = Field(default=100, ge=0, le=10_000)
    """Epochs without improvement before stopping early; 0 never stops early."""
    optimizer: Literal["auto", "SGD", "MuSGD", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSProp"] = "auto"
    """The optimizer. `auto` (Ultralytics' default) picks it and its learning rate from the job's length: AdamW at a
    rate fitted to the number of classes, MuSGD at 0.01 beyond 10,000 iterations; lr0 applies to a named one."""
    lr0: float = Field(default=ULTRALYTICS_LR0, gt=0, le=1)
    """Initial learning rate, for a named optimizer (with `auto` Ultralytics chooses it: only the default is
    accepted there)."""
    seed: int = Field(default=0, ge=0)
    """Random seed, for reproducible runs."""
    batch: int | None = Field(default=None, ge=1, le=4096)
    """Fixed batch size (all GPUs together); left to tuning when unset."""
    workers: int | None = Field(default=None, ge=0, le=128)
    """Fixed dataloader workers per GPU; left to tuning when unset."""
    amp: bool | None = None
    """Fixed mixed precision on or off; left to tuning when unset."""
    cache: Literal["none", "ram", "disk"] | None = None
    """Fixed image caching; left to tuning when unset."""
    augmentation: Augmentation | None = None
    """Where training images are augmented: `cpu` (Ultralytics' dataloader workers) or `gpu` (the same mosaic,
    random perspective, HSV and flips, batched on the GPU, so a few workers only read images). `gpu` trains
    detection and refuses copy_paste, mixup, cutmix and bgr above 0 and rect true, which it does not implement.
    Unset: the faster as tuning measured (`tuning.augmentation`), else `cpu`."""
    extra_args: Annotated[
        dict[str, Any] | None,
        WithJsonSchema(extra_args_schema()),
    ] = None
    """Other Ultralytics train arguments by their Ultralytics name (`mosaic: 0.5`, `cos_lr: true`)."""

    @field_validator("extra_args")
    @classmethod
    def _known_extra_args(cls, args: dict[str, Any] | None) -> dict[str, Any] | None:
        problems = [p for name, value in (args or {}).items() if (p := extra_arg_problem(name, value))]
        if problems and (reserved := reserved_problem(args or {})):  # the rule would say it only once these are gone
            problems.append(reserved)
        if problems:
            raise PydanticCustomError("extra_args", "; ".join(problems))
        return args

    __rules__ = (
        *extra_args_rules(),
        _auto_optimizer_rule(),
        Rule(
            cel="!has(self.augmentation) || self.augmentation != 'gpu' || " + _gpu_args_cel("self"),
            message=f"augmentation gpu does not implement {GPU_AUGMENTATION_LACKS}: leave them out of extraArgs or use "
            "augmentation cpu",
            check=lambda t: t.augmentation != "gpu" or not gpu_augmentation_lacks(t.extra_args or {}),
            field="augmentation",
        ),
    )


class Range(ApiModel):
    """An inclusive range of whole numbers."""

    min: int = Field(ge=0)
    max: int = Field(ge=0)

    __rules__ = (Rule(cel="self.min <= self.max", message="min must not exceed max", check=lambda r: r.min <= r.max),)


class Tuning(ApiModel):
    """The tuning phase: a short measured search for the settings that train the same model soonest."""

    enabled: bool = True
    """Measure before training. When off, unset settings take Ultralytics' defaults (batch 16, workers 8)."""
    batch_rule: Literal["Auto", "Defaults", "DefaultsThenNbs", "UpToNbs", "GroupedNorm", "Any"] = "Auto"
    """Which batch sizes tuning may choose. `Auto`: `GroupedNorm` for a detection job of 30 epochs or more on one
    GPU (where it was measured to keep accuracy), else `Defaults`. `Defaults`: Ultralytics' default batch 16, so
    training takes the defaults' optimizer steps, warm-up included, and reaches their accuracy (speed comes from
    workers, caching and mixed precision). `GroupedNorm`: batch up to `nbs` (64 unless extraArgs sets it), a batch above
    16 normalising each group of 16 images with its own statistics, as batch 16 does (single GPU): the defaults'
    optimizer steps after warm-up and their batch-norm statistics (measured at 30 epochs on the crowded set:
    -0.001 and -0.004 mAP50-95 against batch 16 at two seeds; -0.014 without the groups). `DefaultsThenNbs`: batch
    16 through the warm-up epochs, then a batch up to `nbs` (single GPU). `UpToNbs`: batch up to `nbs` from the
    start: the same steps after warm-up but fewer during it, and batch-norm statistics over the whole batch
    (measured: -0.008 mAP50-95 on the shapes set, -0.095 on the crowded set at 10 epochs). `Any`: any batch in
    `batch`. A batch fixed in `train.batch` is the user's: no rule applies to it."""
    batch: Range = Field(
        default_factory=lambda: Range(min=8, max=256), json_schema_extra={"default": {"min": 8, "max": 256}}
    )
    """Batch sizes tried (powers of two inside the range, capped by free GPU memory and by batchRule)."""
    workers: Range = Field(
        default_factory=lambda: Range(min=2, max=16), json_schema_extra={"default": {"min": 2, "max": 16}}
    )
    """Dataloader workers tried per GPU (capped by the CPUs the pod may use)."""
    amp: list[bool] = Field(default=[True, False], min_length=1, max_length=2)
    """Mixed-precision settings tried."""
    cache: list[Literal["none", "ram"]] = Field(default=["none", "ram"], min_length=1, max_length=2)
    """Caching settings tried (ram only if the decoded data set fits the pod's memory)."""
    augmentation: list[Augmentation] | None = Field(default=None, min_length=1, max_length=2)
    """Where training may augment, when `train.augmentation` does not fix it: `[cpu, gpu]` lets tuning measure
    both and choose the faster (`gpu` only on a GPU, for detection, without copy_paste, mixup, cutmix, bgr or rect);
    `[cpu]` keeps Ultralytics' loader. Unset: both wherever the GPU path can train the job (a pod with a GPU,
    detection, none of those in use), else `cpu` alone. Both paths reach the same accuracy at equal
    epochs; which is faster depends on the pod's CPUs, so it is measured."""
    max_trials: int = Field(default=12, ge=1, le=100)
    """Most trials to run."""
    time_budget_seconds: int = Field(default=120, ge=10, le=3600)
    """Most wall-clock seconds of the whole phase. Within it, tuning spends at most a tenth of the training time
    the first trial predicts (30 s at least), so that it pays for itself."""
    reuse: Literal["IfAvailable", "Never"] = "IfAvailable"
    """Reuse a cached result for the same GPU product, model, image size, data size and CPU budget."""
    in_training: bool = False
    """Tune inside the training pod instead of a pod of its own: each trial is the training's own trainer, and the
    chosen one trains on, its measured batches being training's first, so a second pod's start, data load, RAM-cache
    fill and CUDA start are not paid. The job goes from Pending to Training; `status.tuning` is filled when training
    ends (and cached for later jobs). One GPU or none (`resources.gpus` <= 1). Measured on one H200 (yolov8n,
    1,500 images, 30 epochs): the defaults' accuracy in 0.50-0.54x their time, against 0.62x with a tuning pod."""


class Output(ApiModel):
    """Where checkpoints, weights and results go."""

    claim_name: Name
    """PersistentVolumeClaim that receives the run's folder."""
    path: Annotated[str, StringConstraints(max_length=1024)] = ""
    """Folder inside the volume, relative to its root (no leading `/`, no `..` segment); the job's name is
    appended."""
    checkpoint_every_epochs: int = Field(default=1, ge=1, le=1000)
    """Write `last.pt` every this many epochs; a restarted pod resumes from it."""

    __rules__ = (relative_path_rule("path", optional=True),)


class RunPolicy(ApiModel):
    """How the run is retried, bounded, cleaned up and paused."""

    backoff_limit: int = Field(default=3, ge=0, le=100)
    """Pod failures tolerated per Job (evictions and preemptions do not count)."""
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    """Wall-clock limit of each Job."""
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0)
    """Delete finished Jobs (not this resource) after this many seconds."""
    suspend: bool = False
    """Pause: running Jobs are suspended (pods stop) and resume from the last checkpoint when unset."""


_ARCH_TASK_CEL = task_cel("self.model.architecture")
_SPEC_TASK_CEL = f"(has(self.task) ? self.task : has(self.model.architecture) ? {_ARCH_TASK_CEL} : 'detect')"
"""CEL of YoloTrainJobSpec.effective_task."""
_TUNING_GPU_CEL = "(!has(self.tuning) || !has(self.tuning.augmentation) || !('gpu' in self.tuning.augmentation))"
"""CEL: tuning does not offer the GPU augmentation path."""
_GPU_TASK_CEL = f"{_SPEC_TASK_CEL} in {list(GPU_AUGMENTATION_TASKS)}"
"""CEL: the spec's task is one the GPU augmentation path trains."""


def _architecture_mismatch(spec: YoloTrainJobSpec) -> str:
    arch = spec.model.architecture or ""
    return f"spec.task is {spec.task} but spec.model.architecture {arch} is a {architecture_task(arch)} model"


def _asks_gpu_tuning(spec: YoloTrainJobSpec) -> bool:
    """The spec itself offers tuning the GPU augmentation path (the derived default never does where it cannot
    train, so only an explicit list is refused)."""
    return "gpu" in (spec.tuning.augmentation or [])


def _variant_fits_task(spec: YoloTrainJobSpec) -> bool:
    """The crowded set has many objects an image: no classification labels."""
    shapes = spec.data.shapes
    return shapes is None or shapes.variant == "shapes" or spec.effective_task() != "classify"


class YoloTrainJobSpec(ApiModel):
    """A YOLO training run: tuned on the hardware it gets, checkpointed, observable."""

    task: Task | None = None
    """What the model does: `detect` (boxes), `segment` (boxes and masks), `pose` (boxes and keypoints), `obb`
    (rotated boxes) or `classify` (one class an image). Unset: the architecture's, read from its name
    (`yolov8n-seg.yaml` segments), else `detect`. Weights of another task are refused when the pod loads them."""
    model: TrainModel
    """The model to train."""
    data: TrainData
    """The data set."""
    train: TrainSettings = defaulted(TrainSettings)
    """Training arguments."""
    tuning: Tuning = defaulted(Tuning)
    """The tuning phase."""
    resources: Resources = defaulted(Resources)
    """Pod resources and placement."""
    output: Output | None = None
    """Output volume; without it, results live only as long as the pod (fine for trials)."""
    run_policy: RunPolicy = defaulted(RunPolicy)
    """Retries, deadlines, clean-up, suspension."""
    pod_overrides: PodOverrides | None = None
    """Env, envFrom, extra volumes, service account, pod labels and annotations, affinity, topology spread."""
    source_cache: SourceCache | None = None
    """Where sources fetched by URI are kept for later jobs; the output volume's `.yolo-sources` folder when
    unset (with no output volume, each pod fetches its own)."""

    def effective_task(self) -> Task:
        """spec.task, else the architecture's (its name decides), else detect (weights are checked when loaded)."""
        if self.task is not None:
            return self.task
        return self.architecture_task() or DEFAULT_TASK

    def architecture_task(self) -> Task | None:
        """The task of spec.model.architecture (None for weights)."""
        return architecture_task(self.model.architecture) if self.model.architecture else None

    def offered_augmentation(self) -> list[Augmentation]:
        """The augmentation paths tuning may measure: the spec's `tuning.augmentation`, else both where the GPU
        path can train this job and `cpu` alone elsewhere."""
        if self.tuning.augmentation is not None:
            return list(self.tuning.augmentation)
        gpu_can_train = gpu_augmentation_problem(self.effective_task(), self.train.extra_args or {}) is None
        return ["cpu", "gpu"] if self.resources.gpus > 0 and gpu_can_train else ["cpu"]

    __rules__ = (
        Rule(
            cel=f"!has(self.task) || !has(self.model.architecture) || self.task == {_ARCH_TASK_CEL}",
            message="spec.task does not match the task of spec.model.architecture",
            message_expression=(
                "'spec.task is ' + self.task + ' but spec.model.architecture ' + self.model.architecture + ' is a ' + "
                f"{_ARCH_TASK_CEL} + ' model'"
            ),
            check=lambda s: s.task is None or s.architecture_task() in (None, s.task),
            explain=_architecture_mismatch,
            field="task",
        ),
        Rule(
            cel=f"!has(self.data.shapes) || self.data.shapes.variant == 'shapes' || {_SPEC_TASK_CEL} != 'classify'",
            message="data.shapes.variant crowded has many objects an image: use variant shapes for classify",
            check=_variant_fits_task,
            field="data.shapes.variant",
        ),
        Rule(
            cel="!has(self.train) || !has(self.train.augmentation) || self.train.augmentation != 'gpu' || "
            + _GPU_TASK_CEL,
            message=f"train.augmentation gpu supports task {', '.join(GPU_AUGMENTATION_TASKS)}: use cpu for this task",
            check=lambda s: s.train.augmentation != "gpu" or s.effective_task() in GPU_AUGMENTATION_TASKS,
            field="train.augmentation",
        ),
        Rule(
            cel=f"{_TUNING_GPU_CEL} || {_GPU_TASK_CEL}",
            message=f"tuning.augmentation gpu supports task {', '.join(GPU_AUGMENTATION_TASKS)}: offer cpu only",
            check=lambda s: not _asks_gpu_tuning(s) or s.effective_task() in GPU_AUGMENTATION_TASKS,
            field="tuning.augmentation",
        ),
        Rule(
            cel=f"{_TUNING_GPU_CEL} || !has(self.train) || " + _gpu_args_cel("self.train"),
            message=f"tuning.augmentation gpu does not implement {GPU_AUGMENTATION_LACKS}: leave them out of "
            "train.extraArgs or offer cpu only",
            check=lambda s: not _asks_gpu_tuning(s) or not gpu_augmentation_lacks(s.train.extra_args or {}),
            field="tuning.augmentation",
        ),
        Rule(
            cel="!has(self.tuning) || !has(self.tuning.inTraining) || !self.tuning.inTraining || "
            "!has(self.resources) || !has(self.resources.gpus) || self.resources.gpus <= 1",
            message="tuning.inTraining needs resources.gpus <= 1 (several GPUs train in DDP processes): tune in a pod "
            "of its own (inTraining false)",
            check=lambda s: not s.tuning.in_training or s.resources.gpus <= 1,
            field="tuning.inTraining",
        ),
        *immutable(
            "task", "model", "data", "train", "tuning", "resources", "output", "podOverrides", "sourceCache",
            kind="YoloTrainJob",
        ),
    )  # fmt: skip


class TuningStatus(StatusModel):
    """What the tuning phase chose and how fast it measured it."""

    batch: int | None = None
    workers: int | None = None
    amp: bool | None = None
    cache: str | None = None
    augmentation: str | None = None
    """Where training augments: `cpu` (Ultralytics' loader) or `gpu`."""
    images_per_second: float | None = None
    """Training throughput measured with the chosen settings."""
    trials: int | None = None
    """Trials run (including infeasible ones)."""
    infeasible_trials: int | None = None
    duration_seconds: float | None = None
    source: Literal["Measured", "Cache", "Fixed"] | None = None
    """Measured now, reused from the tuning cache, or fixed by the spec (tuning off)."""
    reason: str | None = None
    """Why these settings: the batch rule that keeps the defaults' accuracy, the estimated training time, the
    budget, any trial measured again."""
    gpu_product: str | None = None
    cache_key: str | None = None


class Progress(StatusModel):
    """Training progress, read from the training pod's metrics."""

    epoch: int | None = None
    epochs: int | None = None
    images_per_second: float | None = None
    map50to95: float | None = Field(default=None, alias="map50to95")
    """Latest validation mAP50-95 of the boxes (every task but classify)."""
    accuracy: float | None = None
    """Latest validation figure of the task: mAP50-95 of boxes (detect, obb), masks (segment) or keypoints (pose),
    top-1 accuracy (classify)."""
    eta_seconds: int | None = None
    updated: str | None = None


class Artifacts(StatusModel):
    """Where the results are, as paths on the output volume."""

    best_weights: str | None = None
    last_weights: str | None = None
    results_dir: str | None = None


class YoloTrainJobStatus(StatusModel):
    """What the operator observed. Written only by the operator."""

    phase: TrainPhase | None = None
    task: Task | None = None
    """The task trained: spec.task, or the one inferred from the architecture's name."""
    conditions: list[Condition] | None = None
    observed_generation: int | None = None
    tuning: TuningStatus | None = None
    progress: Progress | None = None
    artifacts: Artifacts | None = None
    start_time: str | None = None
    completion_time: str | None = None
    restarts: int | None = None
    """Training pods that failed or were disrupted and replaced."""
    message: str | None = None


class YoloTrainJob(ApiModel):
    """Tune and train a YOLO model (YOLOv8, YOLO11, YOLO26; any task) on the cluster's GPUs."""

    model_config = ApiModel.model_config | {"extra": "ignore"}

    api_version: Literal["yolo-operator.io/v1alpha1"] = API_VERSION
    kind: Literal["YoloTrainJob"] = "YoloTrainJob"
    metadata: ObjectMeta
    spec: YoloTrainJobSpec
    status: YoloTrainJobStatus | None = None

    __rules__ = (NAME_RULE,)
