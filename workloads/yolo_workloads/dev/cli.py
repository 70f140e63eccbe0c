"""`yolo-workload dev`: start JupyterLab and sshd side by side and supervise them.

Both run as the current (non-root) user. Their output is forwarded line by line with the Jupyter token
redacted, so the token can never reach the pod log even if a component prints it. When either process exits,
the other is stopped and the container exits with that code, letting Kubernetes restart the pod.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import IO

from yolo_workloads.dev import jupyter, sshd
from yolo_workloads.dev.sshd import DevSetupError

AUTHORIZED_KEYS_ENV = "YOLO_DEV_AUTHORIZED_KEYS"
DEFAULT_AUTHORIZED_KEYS = "/etc/yolo-dev/ssh/authorized_keys"
REDACTED = "[REDACTED]"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--workspace", default=env("YOLO_DEV_WORKSPACE", "/workspace"), help="Jupyter root folder")
    parser.add_argument("--listen", default="0.0.0.0", help="address both servers bind to")
    parser.add_argument("--jupyter-port", type=int, default=8888)
    parser.add_argument("--ssh-port", type=int, default=2222, help="above 1024: sshd runs as non-root")
    parser.add_argument(
        "--jupyter-token-file",
        default=env(jupyter.TOKEN_FILE_ENV),
        help=f"file holding the token (a Secret key); else ${jupyter.TOKEN_ENV}. Required, never empty",
    )
    parser.add_argument(
        "--authorized-keys",
        default=env(AUTHORIZED_KEYS_ENV, DEFAULT_AUTHORIZED_KEYS),
        help="public keys allowed to log in over ssh (a Secret key)",
    )
    parser.add_argument(
        "--state-dir",
        default=env("YOLO_DEV_STATE_DIR", str(Path(env("HOME", "/home/yolo")) / ".yolo-dev")),
        help="private, writable folder for generated configs and host keys",
    )
    parser.add_argument("--no-jupyter", action="store_true", help="start only sshd")
    parser.add_argument("--no-ssh", action="store_true", help="start only JupyterLab")
    parser.add_argument("--check", action="store_true", help="prepare and validate everything, start nothing")


def plan(args: argparse.Namespace) -> list[tuple[str, list[str], dict[str, str] | None, str | None]]:
    """(name, argv, env, secret to redact) of each process to start; raises DevSetupError on bad settings."""
    if args.no_jupyter and args.no_ssh:
        raise DevSetupError("--no-jupyter and --no-ssh together leave nothing to start")
    if os.geteuid() == 0:
        raise DevSetupError("`yolo-workload dev` runs as a non-root user (the image's UID 10001), not as root")
    state = Path(args.state_dir)
    processes: list[tuple[str, list[str], dict[str, str] | None, str | None]] = []
    if not args.no_jupyter:
        token = jupyter.read_token(args.jupyter_token_file)
        settings = jupyter.JupyterSettings(
            state_dir=state / "jupyter", root_dir=Path(args.workspace), port=args.jupyter_port, ip=args.listen
        )
        jupyter.prepare(settings)
        argv = jupyter.command(settings, jupyter.find_jupyter_lab())
        processes.append(("jupyter", argv, jupyter.environment(settings, token), token))
    if not args.no_ssh:
        ssh_settings = sshd.SshdSettings(state_dir=state / "ssh", port=args.ssh_port, listen_address=args.listen)
        argv = sshd.prepare(ssh_settings, Path(args.authorized_keys))
        sshd.check_config(argv)
        processes.append(("sshd", argv, None, None))
    return processes


def forward(name: str, stream: IO[str], secrets: list[str]) -> None:
    """Copy a child's output to ours, prefixed and with every secret replaced."""
    for raw in stream:
        line = raw
        for secret in secrets:
            line = line.replace(secret, REDACTED)
        sys.stdout.write(f"[{name}] {line}")
        sys.stdout.flush()


def supervise(processes: list[tuple[str, list[str], dict[str, str] | None, str | None]]) -> int:
    secrets = [secret for *_, secret in processes if secret]
    children: list[tuple[str, subprocess.Popen[str]]] = []
    done = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for name, argv, env, _ in processes:
        child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert child.stdout is not None
        threading.Thread(target=forward, args=(name, child.stdout, secrets), daemon=True).start()
        children.append((name, child))
        print(f"[dev] started {name} (pid {child.pid})", flush=True)
    exit_code = 0
    while not done.wait(0.5):
        exited = [(name, child) for name, child in children if child.poll() is not None]
        if exited:
            name, child = exited[0]
            exit_code = child.returncode or 1
            print(f"[dev] {name} exited with code {child.returncode}; stopping the others", flush=True)
            break
    for _, child in children:
        if child.poll() is None:
            child.terminate()
    for _, child in children:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
    return exit_code


def run(args: argparse.Namespace) -> int:
    try:
        processes = plan(args)
    except DevSetupError as exc:
        print(f"yolo-workload dev: {exc}", file=sys.stderr)
        return 2
    if args.check:
        for name, argv, _, _ in processes:
            print(f"[dev] would start {name}: {' '.join(argv)}")
        return 0
    return supervise(processes)
