"""Local stand-in for what Kubernetes does for the controller: run a workload verb as a child process, like a Job.

The controller creates Jobs and reads what their pods leave behind (phase, exit code, termination message). Here a
`LocalJob` runs `yolo-workload VERB --config FILE` as a child process in its own session (so a terminal Ctrl-C
reaches only us, and we decide how children stop), retries a failed process up to a backoff limit after the Job
controller's backoff (10 s, doubled each time), and reports the same plain facts the lifecycle consumes. The
termination message is the file the workload writes (`termination_log` in its config). A small record file per
job keeps the outcome across runs, so a second `yolo-operator run` on the same work directory sees a finished
tuning job as finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from yolo_workloads.contract import CONFIG_ERROR_EXIT_CODE

JobState = Literal["absent", "running", "succeeded", "failed"]

STOP_GRACE_SECONDS = 20.0
"""How long children get between SIGTERM and SIGKILL (Kubernetes' default grace period is 30 s)."""

RETRY_BACKOFF_SECONDS = 10.0
"""The wait before the first restart of a failed process, doubled for each next one up to RETRY_BACKOFF_MAX_SECONDS:
the Job controller's pod failure backoff."""
RETRY_BACKOFF_MAX_SECONDS = 360.0


@dataclass(frozen=True)
class JobObservation:
    """What the lifecycle may know about one job: the facts a Job's and its pods' status carry."""

    name: str
    state: JobState
    exit_code: int | None = None
    termination_message: str | None = None
    restarts: int = 0
    """Processes that failed and were started again (pod failures the Job retried)."""


def workload_command() -> list[str]:
    """`yolo-workload` from the same environment as this interpreter (the venv), falling back to `-m`."""
    script = Path(sys.executable).with_name("yolo-workload")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "yolo_workloads.cli"]


class LocalJob:
    """One workload run (tuning, training, serving) as a child process, with Job-like retries and a record."""

    def __init__(
        self,
        name: str,
        verb: str,
        config_path: Path,
        termination_log: Path,
        log_path: Path | None = None,
        backoff_limit: int = 0,
        config_key: str = "",
        env: dict[str, str] | None = None,
        init_config: Path | None = None,
        retry_backoff_s: float = RETRY_BACKOFF_SECONDS,
    ) -> None:
        self.name = name
        self.verb = verb
        self.config_path = config_path
        self.termination_log = termination_log
        self.log_path = log_path
        """Where the child's output goes; None passes it through to our terminal."""
        self.backoff_limit = backoff_limit
        self.config_key = config_key
        """Identifies the rendered config: a record written for another config is not this job's."""
        self.env = env
        self.init_config = init_config
        """A FetchConfig run first (`yolo-workload fetch`), as the controller's init container; its failure (exit
        code and termination message) is the job's."""
        self.record_path = config_path.with_name(f"{name}.job.json")
        self.retry_backoff_s = retry_backoff_s
        self._retry_at: float | None = None
        """When a failed process is started again (None: none waiting)."""
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._final: JobObservation | None = self._load_record()

    # --- records ------------------------------------------------------------------------------------------------

    def _load_record(self) -> JobObservation | None:
        """A finished outcome from an earlier run on this work directory, if it was for the same config."""
        try:
            data = json.loads(self.record_path.read_text())
        except (OSError, ValueError):
            return None
        if data.get("config_key") != self.config_key or data.get("state") not in ("succeeded", "failed"):
            return None
        self.restarts = int(data.get("restarts", 0))
        return JobObservation(
            self.name, data["state"], data.get("exit_code"), self._read_message(), restarts=self.restarts
        )

    def _save_record(self, obs: JobObservation) -> None:
        record = {
            "state": obs.state,
            "exit_code": obs.exit_code,
            "restarts": obs.restarts,
            "config_key": self.config_key,
        }
        tmp = self.record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, self.record_path)

    def forget(self) -> None:
        """Drop a finished outcome (a failed job being run again from scratch)."""
        self._final = None
        self.restarts = 0
        self.record_path.unlink(missing_ok=True)

    def _read_message(self) -> str | None:
        try:
            text = self.termination_log.read_text()
        except OSError:
            return None
        return text if text.strip() else None

    # --- process ------------------------------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._proc is not None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        """Start the process (idempotent while it runs, as applying the same Job twice is)."""
        if self._proc is not None and self._proc.poll() is None:
            return
        self._final = None
        # A stale message from an earlier, interrupted attempt must not be taken for this one's.
        self.termination_log.unlink(missing_ok=True)
        self.record_path.unlink(missing_ok=True)
        command = [*workload_command(), self.verb, "--config", str(self.config_path)]
        if self.init_config is not None:
            fetch = [*workload_command(), "fetch", "--config", str(self.init_config)]
            command = ["/bin/sh", "-c", f"{shlex.join(fetch)} && exec {shlex.join(command)}"]
        stdout: int | IO[bytes] | None = None
        if self.log_path is not None:
            self._log = self.log_path.open("ab")
            stdout = self._log
        env = dict(os.environ) if self.env is None else {**os.environ, **self.env}
        self._proc = subprocess.Popen(
            command,
            stdout=stdout,
            stderr=subprocess.STDOUT if stdout is not None else None,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # our own Ctrl-C handling decides how children stop
        )

    def observe(self) -> JobObservation:
        """The job's state now; a failed process is restarted while the backoff limit allows (as a Job does)."""
        if self._final is not None:
            return self._final
        if self._retry_at is not None:  # a failed process waits out its backoff, as a Job's next pod does
            if time.monotonic() >= self._retry_at:
                self._retry_at = None
                self.start()
            return JobObservation(self.name, "running", restarts=self.restarts)
        if self._proc is None:
            return JobObservation(self.name, "absent", restarts=self.restarts)
        code = self._proc.poll()
        if code is None:
            return JobObservation(self.name, "running", restarts=self.restarts)
        self._close_log()
        # wrong input (CONFIG_ERROR_EXIT_CODE): the Job's podFailurePolicy fails it at once, so do we
        if code not in (0, CONFIG_ERROR_EXIT_CODE) and self.restarts < self.backoff_limit:
            wait = min(self.retry_backoff_s * 2**self.restarts, RETRY_BACKOFF_MAX_SECONDS)
            self.restarts += 1
            self._proc = None
            self._retry_at = time.monotonic() + wait
            return JobObservation(self.name, "running", restarts=self.restarts)
        state: JobState = "succeeded" if code == 0 else "failed"
        obs = JobObservation(self.name, state, code, self._read_message(), restarts=self.restarts)
        self._final = obs
        self._save_record(obs)
        return obs

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> int | None:
        """SIGTERM the child's whole process group (dataloader workers too), wait, then SIGKILL. No record is
        written: an interrupted job is not finished, and the next run starts (and resumes) it again."""
        self._retry_at = None
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        # Workers the leader left behind would hold the GPU and /dev/shm: make sure the group is gone.
        _signal_group(proc.pid, signal.SIGKILL)
        self._close_log()
        return proc.returncode

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
