"""What the tune and train verbs share: reading a contract config, preparing the data, reporting the outcome.

Both verbs run as Kubernetes pods whose only channel back to the operator is the termination message file, so
every outcome (a result or a user-fixable error) goes there as well as to stdout/stderr.
"""

from __future__ import annotations

import errno
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from yolo_workloads.contract import (
    CONFIG_ERROR_EXIT_CODE,
    DEFAULT_TERMINATION_LOG,
    TERMINATION_MESSAGE_LIMIT,
    Cache,
    DataSource,
    ModelSource,
    Task,
    TrainConfig,
    TuneConfig,
    architecture_task,
    task_mismatch,
)

M = TypeVar("M", bound=BaseModel)

EXIT_USER_ERROR = CONFIG_ERROR_EXIT_CODE
"""Exit code for errors the user can fix (bad config, bad data set); the message names the field or file."""


class UserError(Exception):
    """A problem in the config or the data that a user can fix. The message says where and what is expected."""


def load_config(path: str | None, model: type[M]) -> M:
    """Parse a YAML or JSON config file into a contract model."""
    if not path:
        raise UserError("--config is required (a YAML or JSON file)")
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise UserError(f"{path}: cannot read the config ({e.strerror})") from None
    try:
        raw = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise UserError(f"{path}: not valid {'JSON' if path.endswith('.json') else 'YAML'} ({e})") from None
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in e.errors())
        raise UserError(f"{path}: {problems}") from None


def write_termination(path: str, text: str) -> None:
    """Write the pod's termination message, truncated to Kubernetes' limit; never fails the caller."""
    data = text.encode()[:TERMINATION_MESSAGE_LIMIT]
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        if path != DEFAULT_TERMINATION_LOG or os.path.exists(os.path.dirname(path) or "."):
            print(f"warning: cannot write termination message to {path}: {e}", file=sys.stderr)


def report_error(termination_log: str | None, message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    if termination_log:
        write_termination(termination_log, message)


EXIT_FAILURE = 1
"""Exit code for a failure the Job may retry (with its backoff): the message says what went wrong."""


def no_space(error: BaseException, output_dir: str) -> str | None:
    """The message for a write that found its volume full (ENOSPC, or EDQUOT: over quota) anywhere in `error`'s
    chain, naming the folder, the file and what to do; None for any other error."""
    for cause in _chain(error):
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            where = f" writing {cause.filename}" if cause.filename else ""
            return (
                f"output_dir {output_dir}: no space left on its volume ({cause.strerror or 'ENOSPC'}{where}); free "
                "space there or give the volume more (a YoloTrainJob's spec.output.claimName). The last complete "
                "checkpoint is kept, and the next pod resumes from it."
            )
    return None


def _chain(error: BaseException) -> list[BaseException]:
    """`error` and the errors it was raised from or while handling, the last raised first (each once)."""
    chain: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and all(cause is not seen for seen in chain):
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    return chain


def report_failure(error: Exception, termination_log: str | None, output_dir: str) -> int:
    """EXIT_FAILURE for a failure whose cause a user can act on (a full volume), its message reported; anything
    else is raised again, for its traceback, once its chain is the termination message (Kubernetes would otherwise
    show the log's last lines, where a chained error's last line may not be its cause)."""
    full = no_space(error, output_dir)
    if full is None:
        if termination_log:
            write_termination(termination_log, unexpected(error))
        raise error
    report_error(termination_log, full)  # the Job retries it, with its backoff
    return EXIT_FAILURE


def unexpected(error: BaseException) -> str:
    """An unexpected error as one line: its chain from the first cause, each as `Type: message`."""
    said = "; then ".join(f"{type(e).__name__}: {e}".strip().rstrip(":") for e in reversed(_chain(error)))
    return f"unexpected error: {said[:1500]} (the traceback is in the pod's log)"


V = TypeVar("V", TuneConfig, TrainConfig)


def run_verb(path: str | None, model: type[V], body: Callable[[V], int]) -> int:
    """Load the verb's config and run it, with every outcome reported where the operator reads it: a user's mistake
    as EXIT_USER_ERROR and its message, a full volume as a retried failure, anything else with its chain."""
    config: V | None = None
    try:
        config = load_config(path, model)
        return body(config)
    except UserError as e:
        report_error(config.termination_log if config else None, str(e))
        return EXIT_USER_ERROR
    except Exception as e:
        if config is None:
            raise
        return report_failure(e, config.termination_log, config.output_dir)


def prepare_data(source: DataSource) -> Path:
    """The data set's YAML (a classify set's folder), generating the synthetic set first when the config asks for
    it and it is absent."""
    if source.shapes is not None:
        from yolo_workloads.datasets.shapes import ensure_shapes

        spec = source.shapes
        ensure_shapes(
            Path(source.root or "."),
            n=spec.images,
            imgsz=spec.imgsz,
            val=spec.val_images,
            seed=spec.seed,
            variant=spec.variant,
            task=spec.task,
        )
    return source.yaml_path().resolve()


def device_string(gpus: int) -> str:
    """Ultralytics' `device` for this pod: `cpu`, `0`, or `0,1,...` (DDP) over the visible GPUs."""
    import torch

    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus <= 0 or available == 0:
        return "cpu"
    if gpus > available:
        raise UserError(f"gpus: {gpus} requested but only {available} visible in this pod")
    return ",".join(str(i) for i in range(gpus))


def ultralytics_cache(cache: Cache) -> bool | str:
    return False if cache == "none" else cache


def model_task(model: ModelSource) -> str:
    """The task of the model to train: an architecture's from its name, weights' from the checkpoint (what
    `YOLO(path).task` reports)."""
    if model.architecture is not None:
        return architecture_task(model.architecture)
    if not Path(model.ref).is_file():  # Ultralytics would try to download a missing file by its name
        raise UserError(f"model weights {model.ref}: not found")
    from yolo_workloads import offline

    offline.apply()
    from ultralytics.models.yolo import YOLO

    try:
        return str(YOLO(model.ref).task)
    except OSError:
        raise  # reading the volume failed: the Job's retry may find it readable
    except Exception as e:  # what the file holds is no checkpoint Ultralytics loads: no retry can change it
        raise UserError(unloadable(model.ref, e)) from None


def unloadable(ref: str, error: Exception) -> str:
    """What to say of weights Ultralytics refused to load (not a read error): the file and Ultralytics' reason."""
    text = str(error).replace("ERROR ❌️ ", "").strip()
    said = text.splitlines()[0][:400] if text else type(error).__name__
    return f"model weights {ref}: not a checkpoint Ultralytics can load ({said})"


def check_model_task(task: Task, model: ModelSource) -> None:
    """Refuse a model of another task than the config's, naming both (weights' task is known only once loaded)."""
    problem = task_mismatch(task, model.ref, model_task(model))
    if problem is not None:
        raise UserError(problem)


def use_the_cpu_budget(device: str, cpu_budget: float) -> int | None:
    """On a CPU, torch computes with as many threads as the pod has CPUs (its cgroup quota or affinity mask).

    Ultralytics sets torch to min(8, host cores - 1) threads each time it selects the CPU (`select_device`): one
    core of a two-core machine, and 8 threads in a pod whose quota is 4 CPUs on a 64-core node (throttled). Its
    `NUM_THREADS` is read there at each call, so setting it makes every later trainer and validator follow the
    budget. Returns the thread count, or None on a GPU (left as Ultralytics has it)."""
    if device != "cpu":
        return None
    import torch
    from ultralytics.utils import torch_utils

    threads = max(1, math.floor(cpu_budget))
    # torch_utils imports NUM_THREADS from ultralytics.utils without re-exporting it, but select_device reads this
    # module's global, so this is the one to set.
    torch_utils.NUM_THREADS = threads  # type: ignore[attr-defined]
    torch.set_num_threads(threads)
    return threads
