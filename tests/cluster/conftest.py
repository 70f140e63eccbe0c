"""Session fixture `cluster`: one real control plane for all tests marked `cluster`.

It fails loudly when the binaries cannot be built or the cluster cannot start: a missing cluster must never look
like a green run. Set YOLO_SKIP_CLUSTER=1 to skip these tests instead (with a visible reason).
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from .harness import Cluster, build_binaries, reap_stale_clusters, remove_tree, save_logs

# Also importable as plain `harness` by helper modules that are not part of the package.
sys.path.insert(0, str(Path(__file__).resolve().parent))

WORKDIR_PREFIX = "yolo-cluster-"
LOGS_PREFIX = "yolo-logs-cluster-"  # where the component logs of a session with failures are copied


def _interrupt_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """CI kills with SIGTERM; turning it into KeyboardInterrupt lets pytest run the teardown below."""
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Build or reuse the binaries, start one cluster for the session, always tear it down."""
    if os.environ.get("YOLO_SKIP_CLUSTER") == "1":
        pytest.skip("YOLO_SKIP_CLUSTER=1: the Kubernetes control plane tests are skipped")
    tmp_root = Path(tempfile.gettempdir())
    for stale in reap_stale_clusters(tmp_root, WORKDIR_PREFIX):
        print(f"\n[cluster] removed a cluster left by a dead session: {stale}")
    bin_dir = build_binaries()
    workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    (workdir / "owner.pid").write_text(str(os.getpid()))
    previous = signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    keep = os.environ.get("YOLO_KEEP_CLUSTER_DIR") == "1"
    try:
        try:
            started = Cluster.start(bin_dir, workdir)
        except Exception:
            keep = True  # the error names component logs in there
            raise
        print(f"\n[cluster] {started.name} up in {started.startup_seconds:.1f} s; kubeconfig {started.kubeconfig}")
        failed_before = request.session.testsfailed
        try:
            yield started
        finally:
            # Runs on test failures, Ctrl-C and SIGTERM alike.
            if request.session.testsfailed > failed_before:
                saved = save_logs([started.cluster_dir / "logs"], tmp_root, LOGS_PREFIX)
                print(f"\n[cluster] tests failed; the components' logs are copied to {saved}")
            started.stop()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if not keep:
            remove_tree(workdir)
