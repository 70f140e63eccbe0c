"""`yolo-workload serve --config FILE`: the inference server behind each YoloInferenceService replica.

The config (contract.ServeConfig, YAML or JSON) is the contract with the operator; a few flags override it for
hand use (`--weights`, `--architecture`, `--port`, `--device`). `--task` names the task the weights must be for:
before the socket opens, weights of another task end the server with a message naming both and exit code 2
(CONFIG_ERROR_EXIT_CODE: the input is wrong, a restart cannot help). SIGTERM (pod deletion) first marks the server
not-ready, then uvicorn stops accepting connections, in-flight requests finish, the queue drains, and it exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from yolo_workloads.contract import CONFIG_ERROR_EXIT_CODE, TASKS, ServeConfig, Task

CONFIG_ENV = "YOLO_SERVE_CONFIG_JSON"
TASK_ENV = "YOLO_SERVE_TASK"  # `--task`, for the worker processes of `--workers N`
"""The contract's "your input is wrong, do not retry" code (2), as fetch and train use it."""
# The device threads and the event loop share the GIL: a short switch interval keeps request handling
# responsive while a batch is prepared (the default 5 ms would add up to 5 ms to every request).
SWITCH_INTERVAL_S = 0.0005


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="ServeConfig as YAML or JSON")
    parser.add_argument("--weights", help="override model: path to .pt weights")
    parser.add_argument("--architecture", help="override model: Ultralytics YAML such as yolov8n.yaml")
    parser.add_argument("--host", help="override host")
    parser.add_argument("--port", type=int, help="override port")
    parser.add_argument("--device", help="override device (cuda:0, cpu)")
    parser.add_argument(
        "--workers",
        type=int,
        help="override workers: HTTP server processes, each with its own model and batcher on the same GPU "
        "(metrics are merged across them; readiness answers for the worker that takes the probe)",
    )
    parser.add_argument(
        "--task",
        choices=TASKS,
        help="the task the model must be for; weights of another task end the server at start (exit code 2)",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def load_config(path: Path | None, overrides: dict[str, Any]) -> ServeConfig:
    """Read the config file (if any) and apply overrides; raises SystemExit naming the file and field."""
    doc: dict[str, Any] = {}
    if path is not None:
        try:
            text = path.read_text()
        except OSError as exc:
            raise SystemExit(f"serve: cannot read config {path}: {exc.strerror}") from None
        try:
            loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise SystemExit(
                f"serve: {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
            ) from None
        if not isinstance(loaded, dict):
            raise SystemExit(f"serve: {path} must hold a mapping of ServeConfig fields")
        doc = loaded
    if overrides.get("weights") or overrides.get("architecture"):
        doc["model"] = {k: overrides[k] for k in ("weights", "architecture") if overrides.get(k)}
    for key in ("host", "port", "device", "workers"):
        if overrides.get(key) is not None:
            doc[key] = overrides[key]
    try:
        return ServeConfig.model_validate(doc)
    except ValidationError as exc:
        where = str(path) if path else "arguments"
        raise SystemExit(f"serve: invalid config in {where}:\n{exc}") from None


def check_model(cfg: ServeConfig, task: Task | None) -> str | None:
    """The message that ends the server before it opens its socket when its model can never serve: weights that
    are not there, that are no checkpoint Ultralytics loads, or of another task than `task` (None: it can serve).

    Exit code 2 and this message make the YoloInferenceService Failed/InvalidInput with these words, and the pod's
    restarts (with their backoff) find weights that appear later. A read error of the volume is left to the
    server's own load (not ready, the error in /v2/health/ready): a later read may get past it."""
    from yolo_workloads.serve.pipeline import TaskMismatch, read_task
    from yolo_workloads.train.runtime import unloadable

    ref = cfg.model.ref
    if cfg.model.weights is not None and not Path(ref).is_file():
        return f"serve: model weights {ref}: not found"
    try:
        read_task(ref, task)
    except TaskMismatch as exc:
        return f"serve: {exc}"
    except OSError as exc:
        logging.getLogger(__name__).warning("serve: could not read %s: %s", ref, exc)
    except Exception as exc:
        return f"serve: {unloadable(ref, exc)}"
    return None


def expected_task(cfg: ServeConfig, flag: Task | None) -> Task | None:
    """The task the weights must be for: `--task`, else the config's when it names one (the operator renders
    `spec.task` there; a config that leaves it out serves whatever task the weights are for)."""
    return flag or (cfg.task if "task" in cfg.model_fields_set else None)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, vars(args))
    task = expected_task(cfg, getattr(args, "task", None))
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if (message := check_model(cfg, task)) is not None:
        print(message, file=sys.stderr)
        # The pod's termination message: the operator reports it on the YoloInferenceService (InvalidInput).
        from yolo_workloads.train.runtime import write_termination

        write_termination(cfg.termination_log, message)
        return CONFIG_ERROR_EXIT_CODE
    import importlib.util

    import uvicorn

    from yolo_workloads.serve.app import create_app

    sys.setswitchinterval(SWITCH_INTERVAL_S)
    common: dict[str, Any] = {
        "host": cfg.host,
        "port": cfg.port,
        "log_level": args.log_level,
        "access_log": False,  # per-request logs cost more than the request at thousands per second
        "http": "httptools" if importlib.util.find_spec("httptools") else "h11",
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "timeout_graceful_shutdown": 60,
        "backlog": 4096,
    }
    if cfg.workers > 1:
        from yolo_workloads.serve.metrics import MULTIPROC_ENV, prepare_multiprocess_dir

        # Before any worker imports prometheus_client: that import picks the multiprocess value store.
        prepare_multiprocess_dir(os.environ.get(MULTIPROC_ENV))
        os.environ[CONFIG_ENV] = cfg.model_dump_json()
        if task is not None:
            os.environ[TASK_ENV] = task
        from uvicorn.supervisors import Multiprocess

        config = uvicorn.Config(f"{__name__}:app_from_env", factory=True, workers=cfg.workers, **common)
        Multiprocess(config, sockets=[_tcp_listener(config.bind_socket())]).run()
        return 0
    app = create_app(cfg, task)
    state = app.state.serve

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            state.draining = True  # readiness goes 503 at once, before connections close
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises SIGTERM after its graceful shutdown, so the process ends "killed" (143); after a
            # complete drain we exit 0 instead, which is what the pod's status should say.
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    Server(uvicorn.Config(app, **common)).run()
    return 0


def _tcp_listener(sock: socket.socket) -> socket.socket:
    """uvicorn's shared listening socket, made to give its workers' connections TCP_NODELAY.

    uvicorn creates it with protocol 0; rebuilt in each spawned worker, asyncio then does not recognise it as
    TCP and leaves Nagle's algorithm on, so every response waits for a delayed ACK (+40 ms per request,
    measured). Declaring the protocol, and setting the option on the listener (Linux copies it to accepted
    sockets), restores what the single-process server gets."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return sock
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())


def app_from_env() -> Any:
    """Factory for `--workers N`: each worker process builds its app from the config its parent validated."""
    from yolo_workloads.serve.app import create_app

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.setswitchinterval(SWITCH_INTERVAL_S)  # a spawned worker starts with the default
    cfg = ServeConfig.model_validate_json(os.environ[CONFIG_ENV])
    flag = os.environ.get(TASK_ENV)
    return create_app(cfg, expected_task(cfg, next((t for t in TASKS if t == flag), None)))
