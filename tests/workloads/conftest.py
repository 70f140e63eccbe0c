"""Shared fixtures of the workload tests: a tiny shapes data set, and subprocesses with the network blocked.

Network blocking: a `sitecustomize` put first on PYTHONPATH makes every Python process of the workload (and its
dataloader workers) refuse connections and name lookups to anything but loopback, and log each attempt to a file.
A test then asserts the log is empty: no attempt at all, not merely no success.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

_SITECUSTOMIZE = """
import os, socket
_LOG = os.environ["NETBLOCK_LOG"]
_LOCAL = ("127.", "::1", "localhost", "0.0.0.0", "")

def _record(what):
    with open(_LOG, "a") as f:
        f.write(f"{os.getpid()} {what}\\n")

def _host(address):
    return str(address[0]) if isinstance(address, tuple) and address else str(address)

_connect = socket.socket.connect
def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _host(address).startswith(_LOCAL):
        _record(f"connect {address!r}")
        raise OSError(101, "network blocked by the test")
    return _connect(self, address)
socket.socket.connect = connect
socket.socket.connect_ex = lambda self, a: connect(self, a) or 0

_getaddrinfo = socket.getaddrinfo
def getaddrinfo(host, *args, **kwargs):
    if host is not None and not str(host).startswith(_LOCAL):
        _record(f"getaddrinfo {host!r}")
        raise socket.gaierror(-2, "name resolution blocked by the test")
    return _getaddrinfo(host, *args, **kwargs)
socket.getaddrinfo = getaddrinfo
"""


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny shapes set (24 train, 4 val images at 64 px); tests copy it before changing it."""
    from yolo_workloads.datasets.shapes import generate

    return generate(tmp_path_factory.mktemp("shapes"), n=24, imgsz=64, val=4, seed=1, processes=1)


@pytest.fixture
def netblock(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Environment for a network-blocked subprocess, and the file where blocked attempts are logged."""
    site = tmp_path / "netblock"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    log = tmp_path / "network-attempts.log"
    log.write_text("")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO / "operator"), str(REPO / "workloads")])
    env["NETBLOCK_LOG"] = str(log)
    env["YOLO_CONFIG_DIR"] = str(tmp_path / "ultralytics-config")  # fresh: no font or weights cached before
    env["OMP_NUM_THREADS"] = "1"
    env.pop("YOLO_TUNE_INJECT_FAULT", None)
    return env, log


@pytest.fixture
def workload() -> Callable[..., subprocess.Popen[str]]:
    """Start `yolo-workload ARGS...` as a subprocess with the given environment."""

    def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "yolo_workloads.cli", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    return start
