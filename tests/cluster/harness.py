"""A real Kubernetes control plane for tests: kube-apiserver, controller-manager, scheduler and etcd
started by `kwokctl --runtime binary`, with kwok simulating GPU nodes and the kubelet's pod life cycle.

The binaries are built from the Go module proxy by `controlplane/build.sh` and cached outside the repo,
so starting a cluster needs no network and no container engine. See tests/cluster/README.md.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from ports import free_ports

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "controlplane" / "build.sh"
KWOK_DIR = HERE / "kwok"

# Annotations read by the kwok Stages in kwok/stages.yaml.
HOLD_KEY = "kwok.yolo-operator.io/hold"
EXIT_CODE_KEY = "kwok.yolo-operator.io/exit-code"
MESSAGE_KEY = "kwok.yolo-operator.io/message"
# Job pods in namespaces named like this are held without any annotation (race-free for operator pods).
HOLD_NAMESPACE_PREFIX = "hold-"

GPU_RESOURCE = "nvidia.com/gpu"

T = TypeVar("T")


class ClusterError(RuntimeError):
    """The control plane could not be built, started or queried."""


def build_binaries(timeout_s: float = 3600) -> Path:
    """Build or reuse the cached control plane binaries; return their directory.

    Idempotent: with a warm cache `build.sh` only compares a stamp, so calling this on every session is cheap.
    """
    proc = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=timeout_s, check=False)
    if proc.returncode != 0:
        raise ClusterError(f"{BUILD_SCRIPT} failed (rc {proc.returncode}):\n{proc.stderr[-8000:]}")
    bin_dir = Path(proc.stdout.strip().splitlines()[-1])
    if not (bin_dir / "kwokctl").is_file():
        raise ClusterError(f"{BUILD_SCRIPT} printed {bin_dir}, which holds no kwokctl")
    return bin_dir


def wait_until(check: Callable[[], T | None], timeout_s: float, what: str, interval_s: float = 0.2) -> T:
    """Poll `check` until it returns something truthy; raise with `what` in the message on timeout."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except (ClusterError, subprocess.SubprocessError) as exc:
            last_error = exc
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout_s:.0f} s waiting for {what}; last error: {last_error}")
        time.sleep(interval_s)


class Cluster:
    """One running test cluster; `kubectl` runs as cluster-admin unless given another kubeconfig."""

    def __init__(self, name: str, workdir: Path, bin_dir: Path, extra: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.extra = dict(extra or {})  # more kwokctl options and componentsPatches (the real node's, say)
        self.workdir = workdir
        self.bin_dir = bin_dir
        self.kwok_workdir = workdir / "kwok"
        self.cluster_dir = self.kwok_workdir / "clusters" / name
        self.kubeconfig = self.cluster_dir / "kubeconfig.yaml"
        self.startup_seconds: float | None = None

    # --- life cycle -------------------------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        bin_dir: Path,
        workdir: Path,
        name: str | None = None,
        timeout_s: float = 90,
        extra: Mapping[str, Any] | None = None,
    ) -> Cluster:
        """Create the cluster, register the fake GPU nodes and wait until they are Ready.

        `extra`: {"options": {...}, "componentsPatches": [...]} merged into the kwokctl configuration.
        On any failure the half-started cluster is deleted before the error propagates.
        """
        cluster = cls(name or f"yolo-{uuid.uuid4().hex[:8]}", workdir, bin_dir, extra)
        started = time.monotonic()
        try:
            cluster._create(timeout_s)
            cluster.kubectl("apply", "-f", str(KWOK_DIR / "nodes.yaml"))
            cluster._wait_nodes_ready(timeout_s)
            cluster._wait_default_service_account("default", timeout_s)
        except BaseException:
            cluster.stop()
            raise
        cluster.startup_seconds = time.monotonic() - started
        return cluster

    def _env(self) -> dict[str, str]:
        """kwokctl keeps its state under our tmp dir and never reads the user's ~/.kwok or ~/.kube."""
        env = dict(os.environ)
        env["KWOK_WORKDIR"] = str(self.kwok_workdir)
        env["KUBECONFIG"] = str(self.workdir / "unused-kubeconfig.yaml")
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def _config_path(self) -> Path:
        """Write the kwokctl configuration: local binaries only (nothing downloaded), free ports, our Stages."""
        b = self.bin_dir
        api, etcd, peer, manager, scheduler, kwok = free_ports(6)
        options = {
            "runtime": "binary",
            "kubeApiserverPort": api,
            "etcdPort": etcd,
            "etcdPeerPort": peer,
            "kubeControllerManagerPort": manager,
            "kubeSchedulerPort": scheduler,
            "kwokControllerPort": kwok,
            "kubeAuthorization": True,  # Node,RBAC
            "kubeAdmission": True,  # the default admission plugins of 1.35, PodSecurity included
            "securePort": True,
            "quietPull": True,
            "kubeApiserverBinary": str(b / "kube-apiserver"),
            "kubeControllerManagerBinary": str(b / "kube-controller-manager"),
            "kubeSchedulerBinary": str(b / "kube-scheduler"),
            "kubectlBinary": str(b / "kubectl"),
            "etcdBinary": str(b / "etcd"),
            "kwokControllerBinary": str(b / "kwok"),
            "cacheDir": str(self.workdir / "cache"),
        }
        options.update(self.extra.get("options", {}))
        config = {
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
            "kind": "KwokctlConfiguration",
            "options": options,
        }
        if self.extra.get("componentsPatches"):
            config["componentsPatches"] = self.extra["componentsPatches"]
        path = self.workdir / "kwokctl.yaml"
        stages = (KWOK_DIR / "stages.yaml").read_text()
        path.write_text(yaml.safe_dump(config, sort_keys=False) + "---\n" + stages)
        return path

    def _kwokctl(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / "kwokctl"), *args],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def _create(self, timeout_s: float) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self._config_path()
        proc = self._kwokctl(
            "create", "cluster", "--name", self.name, "--config", str(config),
            "--kubeconfig", str(self.workdir / "unused-kubeconfig.yaml"),
            "--wait", f"{int(timeout_s)}s", timeout_s=timeout_s + 30,
        )  # fmt: skip
        if proc.returncode != 0:
            raise ClusterError(
                f"kwokctl create cluster failed (rc {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
                f"\ncomponent logs: {self.cluster_dir / 'logs'}"
            )

    def _wait_nodes_ready(self, timeout_s: float) -> None:
        names = [doc["metadata"]["name"] for doc in load_yaml_documents(KWOK_DIR / "nodes.yaml")]

        def all_ready() -> bool:
            nodes = self.get_json("nodes")["items"]
            ready = {n["metadata"]["name"] for n in nodes if node_is_ready(n)}
            return set(names) <= ready

        wait_until(all_ready, timeout_s, f"nodes {names} to be Ready")

    def _wait_default_service_account(self, namespace: str, timeout_s: float) -> None:
        """Pods are rejected until the controller-manager has created the namespace's `default` ServiceAccount."""
        wait_until(
            lambda: self.kubectl("get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0,
            timeout_s,
            f"ServiceAccount {namespace}/default",
        )

    def stop(self) -> None:
        """Delete the cluster; kill whatever kwokctl left behind. Safe to call twice or on a half-started one."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._kwokctl("delete", "cluster", "--name", self.name, timeout_s=60)
        kill_processes_under(self.workdir)

    # --- kubectl ----------------------------------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout_s: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster (admin by default); raise ClusterError with stderr when `check`."""
        cmd = [str(self.bin_dir / "kubectl"), "--kubeconfig", str(kubeconfig or self.kubeconfig), *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout_s, check=False)
        if check and proc.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed (rc {proc.returncode}): {proc.stderr.strip()}")
        return proc

    def get_json(self, *args: str, namespace: str | None = None) -> dict[str, Any]:
        """`kubectl get ... -o json`, parsed."""
        ns = ["-n", namespace] if namespace else []
        parsed: dict[str, Any] = json.loads(self.kubectl("get", *args, *ns, "-o", "json").stdout)
        return parsed

    def apply(self, *manifests: Mapping[str, Any], namespace: str | None = None) -> None:
        """Server-side apply of manifests given as dicts."""
        ns = ["-n", namespace] if namespace else []
        text = yaml.safe_dump_all([dict(m) for m in manifests], sort_keys=False)
        self.kubectl("apply", "--server-side", "--field-manager=tests", *ns, "-f", "-", input=text)

    # --- helpers for tests ------------------------------------------------------------------------------------

    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> str:
        """Create (or update) a namespace and wait for its `default` ServiceAccount, so pods can be created."""
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": dict(labels or {})},
            }
        )
        self._wait_default_service_account(name, 30)
        return name

    def wait_for_pod(
        self,
        namespace: str,
        name: str,
        predicate: Callable[[dict[str, Any]], bool],
        what: str,
        timeout_s: float = 30,
    ) -> dict[str, Any]:
        """Poll a pod until `predicate(pod)` holds; return the pod."""

        def check() -> dict[str, Any] | None:
            pod = self.get_json("pod", name, namespace=namespace)
            return pod if predicate(pod) else None

        return wait_until(check, timeout_s, f"pod {namespace}/{name} {what}")

    def hold_pod(self, namespace: str, name: str) -> None:
        """Keep a running Job pod Running until `finish_pod` (only useful before its 1 s auto-completion)."""
        self.kubectl("annotate", "--overwrite", "-n", namespace, f"pod/{name}", f"{HOLD_KEY}=true")

    def finish_pod(self, namespace: str, name: str, exit_code: int, message: str = "") -> dict[str, Any]:
        """Make a Running pod terminate with `exit_code` and termination `message`; return the finished pod.

        kwok's `pod-finish` Stage copies the annotations into status.containerStatuses[].state.terminated, which is
        exactly where the operator reads a tuning result (the kubelet would put /dev/termination-log there).
        """
        self.wait_for_pod(namespace, name, lambda p: p.get("status", {}).get("phase") == "Running", "to be Running")
        patch = {"metadata": {"annotations": {EXIT_CODE_KEY: str(exit_code), MESSAGE_KEY: message}}}
        self.kubectl("patch", "-n", namespace, f"pod/{name}", "--type=merge", "-p", json.dumps(patch))
        return self.wait_for_pod(
            namespace,
            name,
            lambda p: p.get("status", {}).get("phase") in ("Succeeded", "Failed"),
            "to terminate",
        )

    def service_account_kubeconfig(self, namespace: str, sa_name: str, duration_s: int = 3600) -> Path:
        """Create the ServiceAccount if needed, request a token for it (TokenRequest) and write a kubeconfig.

        Lets a test run the operator, or kubectl, with exactly the RBAC granted to that account.
        """
        self.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa_name}}, namespace=namespace)
        token = self.kubectl("create", "token", sa_name, "-n", namespace, f"--duration={duration_s}s").stdout.strip()
        admin = yaml.safe_load(self.kubeconfig.read_text())
        server, ca_data = cluster_endpoint(admin, self.kubeconfig.parent)
        user = f"system:serviceaccount:{namespace}:{sa_name}"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": self.name, "cluster": {"server": server, "certificate-authority-data": ca_data}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": user, "context": {"cluster": self.name, "user": user, "namespace": namespace}}],
            "current-context": user,
        }
        path = self.workdir / "kubeconfigs" / f"{namespace}-{sa_name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path


# --- small pure helpers -------------------------------------------------------------------------------------------


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    """All non-empty YAML documents of a file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def node_is_ready(node: Mapping[str, Any]) -> bool:
    """True when the node's Ready condition is True."""
    conditions: Iterable[Mapping[str, Any]] = node.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    """True when the pod is Running and its Ready condition is True."""
    status = pod.get("status", {})
    conditions: Iterable[Mapping[str, Any]] = status.get("conditions") or []
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
    )


def cluster_endpoint(kubeconfig: Mapping[str, Any], base: Path) -> tuple[str, str]:
    """Server URL and base64 CA bundle of a kubeconfig's current cluster (kwokctl writes the CA as a file path)."""
    contexts = {c["name"]: c["context"] for c in kubeconfig["contexts"]}
    cluster_name = contexts[kubeconfig["current-context"]]["cluster"]
    cluster = next(c["cluster"] for c in kubeconfig["clusters"] if c["name"] == cluster_name)
    if "certificate-authority-data" in cluster:
        return cluster["server"], cluster["certificate-authority-data"]
    ca_path = Path(cluster["certificate-authority"])
    ca_path = ca_path if ca_path.is_absolute() else base / ca_path
    return cluster["server"], base64.b64encode(ca_path.read_bytes()).decode()


def kill_processes_under(workdir: Path) -> None:
    """Kill processes whose command line mentions `workdir` (components kwokctl failed to stop).

    Matching on our unique tmp dir only ever hits processes this harness started.
    """
    marker = str(workdir) + os.sep  # the separator keeps /tmp/x-ab from matching /tmp/x-abc
    me = os.getpid()
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit() or int(proc_dir.name) == me:
            continue
        try:
            cmdline = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc_dir.name), signal.SIGKILL)


def reap_stale_clusters(tmp_root: Path, prefix: str) -> list[Path]:
    """Kill and remove clusters left by sessions that died without teardown (SIGKILL, power loss).

    Each session writes its pid to `<workdir>/owner.pid`; a workdir whose owner is gone is stale.
    """
    reaped = []
    for workdir in tmp_root.glob(f"{prefix}*"):
        pid_file = workdir / "owner.pid"
        try:
            owner = int(pid_file.read_text())
        except (OSError, ValueError):
            continue
        if Path(f"/proc/{owner}").exists():
            continue
        kill_processes_under(workdir)
        remove_tree(workdir)
        reaped.append(workdir)
    return reaped


LOG_COPIES_KEPT = 3  # the newest copies of logs from failed sessions; older ones are removed


def save_logs(folders: Iterable[Path], tmp_root: Path, prefix: str) -> Path:
    """Copy the `*.log` files of `folders` (components, node) to a new `<tmp_root>/<prefix><time>`, before teardown
    deletes them; keep only the newest LOG_COPIES_KEPT such copies. Called when a session had failures: a stalled
    control plane otherwise leaves nothing to read."""
    now = time.time_ns()
    stamp = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now // 10**9))}.{now % 10**9:09d}"  # names sort by time
    target = Path(tempfile.mkdtemp(prefix=f"{prefix}{stamp}-", dir=tmp_root))
    for folder in folders:
        (target / folder.name).mkdir(exist_ok=True)
        for log in sorted(folder.glob("*.log")):
            with contextlib.suppress(OSError):  # a component may rotate or remove its log meanwhile
                shutil.copy2(log, target / folder.name / log.name)
    for old in sorted(tmp_root.glob(f"{prefix}*"))[:-LOG_COPIES_KEPT]:
        remove_tree(old)
    return target


def remove_tree(path: Path) -> None:
    """rm -rf that tolerates files vanishing underneath it."""
    shutil.rmtree(path, ignore_errors=True)
