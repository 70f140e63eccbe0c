"""A real node beside the fake ones: kubelet and kube-proxy (built with the control plane), Debian's containerd with
its CRI plugin, Debian's CNI plugins, a pause image built here, and the project's images loaded into it.

It joins the test control plane as `real-node`; kwok manages only the nodes annotated `kwok.x-k8s.io/node: fake`,
so the pods scheduled here run real processes. Everything this machine lacks for that is configured explicitly:

| what | why |
| --- | --- |
| containerd `restrict_oom_score_adj` | root here lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj |
| kubelet `failCgroupV1: false`, `cgroupDriver: cgroupfs` | the machine runs cgroup v1 without systemd |
| kubelet anonymous auth, AlwaysAllow | the test API server calls the kubelet (logs, exec) without a client cert |
| bridge `yolo0` made before the kubelet starts | its address is the node IP and the API server's advertised address |
| kube-proxy `masqueradeAll` | no br_netfilter: a pod reaching a Service backed by a pod on the same bridge |
| eviction and image GC thresholds at the floor | the Docker data root and the images share one disk |
| no cluster DNS | nothing the operator runs resolves names; Services are reached by ClusterIP |

State that is slow to rebuild (containerd's content store: the images) lives under the cache and is reused;
everything else lives in the test's work directory and goes with it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from harness import Cluster, ClusterError, cluster_endpoint, node_is_ready, wait_until
from ports import free_ports

NODE_NAME = "real-node"
BRIDGE = "yolo0"
POD_CIDR = "10.244.0.0/16"
GATEWAY = "10.244.0.1"
SERVICE_CIDR = "10.96.0.0/16"
API_SERVICE_IP = "10.96.0.1"
PAUSE_IMAGE = "docker.io/yolo-operator/pause:local"
CNI_BIN = Path("/usr/lib/cni")
RUN_DIR = Path("/run/yolo-operator/node")
CACHE = Path(os.environ.get("YOLO_OPERATOR_CACHE") or Path.home() / ".cache" / "yolo-operator")
PAUSE_SOURCE = Path(__file__).resolve().parent / "pause.c"
EVICTION_FLOOR = 0.01
"""The kubelet's disk eviction thresholds here (`_kubelet_config`): below them it deletes images no pod runs."""


def cluster_options() -> dict[str, Any]:
    """kwokctl options for a control plane a real node can join (see Cluster.start's `extra`)."""
    return {
        "options": {
            "bindAddress": "0.0.0.0",
            "kubeApiserverCertSANs": [API_SERVICE_IP, GATEWAY, NODE_NAME],
        },
        "componentsPatches": [
            {
                "name": "kube-apiserver",
                "extraArgs": [
                    {"key": "advertise-address", "value": GATEWAY},
                    {"key": "service-cluster-ip-range", "value": SERVICE_CIDR},
                    # The node's name does not resolve here; its InternalIP (the bridge) does: `kubectl logs`.
                    {"key": "kubelet-preferred-address-types", "value": "InternalIP,Hostname"},
                ],
            },
            {
                "name": "kube-controller-manager",
                "extraArgs": [{"key": "service-cluster-ip-range", "value": SERVICE_CIDR}],
            },
            {
                "name": "kwok-controller",
                "extraArgs": [
                    {"key": "manage-all-nodes", "value": "false"},
                    {"key": "manage-nodes-with-annotation-selector", "value": "kwok.x-k8s.io/node=fake"},
                ],
            },
        ],
    }


def missing_prerequisites(bin_dir: Path) -> list[str]:
    """What this machine lacks to run the node, each named with where it comes from."""
    missing = [
        f"{b} ({bin_dir}, built by `make cluster-bin`)"
        for b in ("kubelet", "kube-proxy")
        if not (bin_dir / b).is_file()
    ]
    for tool, package in (
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("runc", "runc"),
        ("iptables", "iptables"),
        ("conntrack", "conntrack"),
        ("gcc", "gcc"),
        ("ip", "iproute2"),
    ):
        if shutil.which(tool) is None:
            missing.append(f"{tool} (Debian package {package})")
    if not (CNI_BIN / "bridge").is_file():
        missing.append(f"{CNI_BIN}/bridge (Debian package containernetworking-plugins)")
    if os.geteuid() != 0:
        missing.append("root (the kubelet and containerd run as root)")
    return missing


def run(*cmd: str, timeout_s: float = 120, input_bytes: bytes | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False, input=input_bytes)
    if proc.returncode != 0:
        raise ClusterError(f"{' '.join(cmd)} failed (rc {proc.returncode}): {proc.stderr.decode()[-3000:]}")
    return proc.stdout.decode()


@dataclass
class RealNode:
    cluster: Cluster
    bin_dir: Path
    workdir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def socket(self) -> Path:
        return RUN_DIR / "containerd.sock"

    def ctr(self, *args: str, timeout_s: float = 120, input_bytes: bytes | None = None) -> str:
        return run(
            "ctr", "--address", str(self.socket), "-n", "k8s.io", *args, timeout_s=timeout_s, input_bytes=input_bytes
        )

    # --- life cycle -------------------------------------------------------------------------------------------

    def start(self, timeout_s: float = 120) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._bridge()
        self._start("containerd", ["containerd", "--config", str(self._containerd_config())])
        wait_until(lambda: self.socket.exists() and self._ctr_answers(), 60, "containerd to answer")
        self._remove_leftover_containers()
        self._load_pause_image()
        kubeconfig = self._kubeconfig()
        self._start(
            "kubelet",
            [
                str(self.bin_dir / "kubelet"),
                f"--config={self._kubelet_config()}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.workdir / 'kubelet'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={GATEWAY}",
                "--node-labels=yolo-operator.io/real-node=true",
                "--v=1",
            ],
        )
        self._start("kube-proxy", [str(self.bin_dir / "kube-proxy"), f"--config={self._proxy_config(kubeconfig)}"])
        wait_until(self._ready, timeout_s, f"node {NODE_NAME} to be Ready (logs: {self.workdir})", interval_s=1)

    def stop(self) -> None:
        """Pods first (so their containers stop), then the node's processes; safe on a half-started node."""
        with contextlib.suppress(Exception):
            self.cluster.kubectl(
                "delete",
                "pods",
                "--all",
                "-A",
                "--field-selector",
                f"spec.nodeName={NODE_NAME}",
                "--grace-period=0",
                "--force",
                "--wait=false",
                check=False,
                timeout_s=30,
            )
        for name in ("kube-proxy", "kubelet"):
            self._stop(name)
        with contextlib.suppress(Exception):
            self._remove_leftover_containers()
        self._stop("containerd")
        with contextlib.suppress(Exception):
            run(str(self.bin_dir / "kube-proxy"), "--cleanup", timeout_s=60)
        self._detach_stale_pods()
        self._unmount()

    @staticmethod
    def _detach_stale_pods() -> None:
        """Pods of an earlier run that was killed keep their network namespace (CNI's DEL never ran) and their
        address on the bridge: the next run's IPAM hands the same address out again and the stale namespace
        answers for it (connection refused). Their links and namespaces go before a run and after it."""
        links = subprocess.run(
            ["ip", "-o", "link", "show", "master", BRIDGE], capture_output=True, text=True, check=False
        ).stdout
        for line in links.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            subprocess.run(["ip", "link", "delete", name], capture_output=True, check=False)
        namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
        for line in namespaces.splitlines():
            if line.startswith("cni-"):
                subprocess.run(["ip", "netns", "delete", line.split()[0]], capture_output=True, check=False)

    def _unmount(self) -> None:
        """The kubelet's volume mounts (tmpfs, projected tokens) it left under the work directory, deepest first."""
        prefix = str(self.workdir) + os.sep
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)

    def _start(self, name: str, argv: list[str]) -> None:
        log = (self.workdir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        time.sleep(0.5)
        if self.processes[name].poll() is not None:
            raise ClusterError(f"{name} exited at once: {(self.workdir / f'{name}.log').read_text()[-3000:]}")

    def _stop(self, name: str) -> None:
        proc = self.processes.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def _ready(self) -> bool:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise ClusterError(f"{name} exited: {(self.workdir / f'{name}.log').read_text()[-3000:]}")
        node = self.cluster.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        return node.returncode == 0 and node_is_ready(json.loads(node.stdout))

    def _ctr_answers(self) -> bool:
        try:
            self.ctr("version", timeout_s=10)
        except (ClusterError, subprocess.TimeoutExpired):
            return False
        return True

    # --- configuration ----------------------------------------------------------------------------------------

    def _bridge(self) -> None:
        """The pods' bridge with the gateway address, made up front: the node IP and the API server's advertised
        address live on it, so nothing depends on this machine's other interfaces."""
        self._detach_stale_pods()
        if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True, check=False).returncode != 0:
            run("ip", "link", "add", BRIDGE, "type", "bridge")
        addresses = run("ip", "-4", "addr", "show", BRIDGE)
        if f"{GATEWAY}/" not in addresses:
            run("ip", "addr", "add", f"{GATEWAY}/16", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
        # Docker's engine sets the FORWARD policy to DROP and loads br_netfilter, so frames between two pods on the
        # bridge pass through iptables and are dropped: accept what comes from or goes to the pod network.
        for direction in ("-s", "-d"):
            rule = ["FORWARD", direction, POD_CIDR, "-j", "ACCEPT"]
            if subprocess.run(["iptables", "-C", *rule], capture_output=True, check=False).returncode != 0:
                run("iptables", "-I", *rule)

    def _containerd_config(self) -> Path:
        root = CACHE / "node" / "containerd"  # the content store: loaded images survive between runs
        cni_conf = self.workdir / "cni"
        cni_conf.mkdir(parents=True, exist_ok=True)
        (cni_conf / "10-yolo.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "yolo-pods",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": BRIDGE,
                            "isGateway": True,
                            "ipMasq": True,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": POD_CIDR, "gateway": GATEWAY}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(self.workdir / "cni-ipam"),
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                }
            )
        )
        text = f"""version = 2
root = "{root}"
state = "{RUN_DIR / "containerd-state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{self.socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
"""
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        root.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "containerd.toml"
        path.write_text(text)
        return path

    def _kubeconfig(self) -> Path:
        """The admin kubeconfig with the CA inlined (the kubelet and kube-proxy run from another directory)."""
        admin = yaml.safe_load(self.cluster.kubeconfig.read_text())
        server, ca_data = cluster_endpoint(admin, self.cluster.kubeconfig.parent)
        user = next(u["user"] for u in admin["users"])
        for key in ("client-certificate", "client-key"):
            if key in user:
                path = Path(user.pop(key))
                path = path if path.is_absolute() else self.cluster.kubeconfig.parent / path
                user[f"{key}-data"] = base64.b64encode(path.read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": server, "certificate-authority-data": ca_data}}],
            "users": [{"name": "node", "user": user}],
            "contexts": [{"name": "node", "context": {"cluster": "test", "user": "node"}}],
            "current-context": "node",
        }
        path = self.workdir / "node-kubeconfig.yaml"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def _kubelet_config(self) -> Path:
        port, healthz = free_ports(2)
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": "0.0.0.0",
            "port": port,
            "readOnlyPort": 0,
            "healthzPort": healthz,
            "healthzBindAddress": "127.0.0.1",
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "imageServiceEndpoint": f"unix://{self.socket}",
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": f"{EVICTION_FLOOR:.0%}",
                "imagefs.available": f"{EVICTION_FLOOR:.0%}",
                "nodefs.inodesFree": f"{EVICTION_FLOOR:.0%}",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "maxPods": 30,
            "serializeImagePulls": False,
            "resolvConf": "/etc/resolv.conf",
            "registerNode": True,
            "protectKernelDefaults": False,
            "localStorageCapacityIsolation": True,
            "shutdownGracePeriod": "0s",
        }
        path = self.workdir / "kubelet.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def _proxy_config(self, kubeconfig: Path) -> Path:
        metrics, healthz = free_ports(2)
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "hostnameOverride": NODE_NAME,
            "clusterCIDR": POD_CIDR,
            "iptables": {"masqueradeAll": True},
            "conntrack": {"maxPerCore": 0},  # leave the host's conntrack table size alone
            "metricsBindAddress": f"127.0.0.1:{metrics}",
            "healthzBindAddress": f"127.0.0.1:{healthz}",
        }
        path = self.workdir / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    # --- images -----------------------------------------------------------------------------------------------

    def _load_pause_image(self) -> None:
        """A static program that sleeps until SIGTERM and reaps orphans: the pod sandbox. No registry serves one."""
        if PAUSE_IMAGE in self.ctr("images", "ls", "-q"):
            return
        build = self.workdir / "pause"
        build.mkdir(exist_ok=True)
        run("gcc", "-static", "-O2", "-o", str(build / "pause"), str(PAUSE_SOURCE))
        layer = build / "layer.tar"
        run("tar", "-C", str(build), "-cf", str(layer), "pause")
        self.ctr("images", "import", "--index-name", PAUSE_IMAGE, str(oci_archive(build, layer, ["/pause"])))

    def load_docker_images(self, images: list[str], docker_env: dict[str, str]) -> dict[str, float]:
        """`docker save | ctr import` for each image whose Docker image ID is not loaded yet; seconds per import."""
        stamps = CACHE / "node" / "loaded-images.json"
        loaded: dict[str, str] = json.loads(stamps.read_text()) if stamps.exists() else {}
        present = self.ctr("images", "ls", "-q")
        took: dict[str, float] = {}
        for image in images:
            image_id = docker_inspect(image, "{{.Id}}", docker_env)
            if not image_id:
                raise ClusterError(f"image {image} is not in the Docker engine: run `make images` first")
            if loaded.get(image) == image_id and containerd_name(image) in present.split():
                continue
            started = time.monotonic()
            if containerd_name(image) in present.split():
                # Drop the old version first: its layers no other image shares are collected (gigabytes each).
                self.ctr("images", "rm", "--sync", containerd_name(image))
            size = docker_inspect(image, "{{.Size}}", docker_env)  # its layers, uncompressed
            short = disk_short_for(int(size) if size.isdigit() else 0, shutil.disk_usage(CACHE))
            if short:
                raise ClusterError(f"loading {image} into the node: {short}")
            save = subprocess.Popen(["docker", "save", image], env=docker_env, stdout=subprocess.PIPE)
            imported = subprocess.run(
                ["ctr", "--address", str(self.socket), "-n", "k8s.io", "images", "import", "-"],
                stdin=save.stdout,
                capture_output=True,
                timeout=1800,
                check=False,
            )
            save.wait(timeout=60)
            if imported.returncode != 0 or save.returncode != 0:
                raise ClusterError(f"loading {image} into the node failed: {imported.stderr.decode()[-2000:]}")
            took[image] = time.monotonic() - started
            loaded[image] = image_id
            stamps.write_text(json.dumps(loaded, indent=1))
        if took:
            self._prune_images({containerd_name(i) for i in images} | {PAUSE_IMAGE})
        return took

    def _prune_images(self, keep: set[str]) -> None:
        """Every other image record (old versions, the CRI's `sha256:<id>` aliases of them), so containerd
        collects their layers: a replaced dependency layer is gigabytes."""
        for name in self.ctr("images", "ls", "-q").split():
            if name not in keep:
                with contextlib.suppress(ClusterError):
                    self.ctr("images", "rm", "--sync", name)

    def _remove_leftover_containers(self) -> None:
        """Containers a killed run left in the persistent content store's namespace."""
        for task in self.ctr("tasks", "ls", "-q").split():
            with contextlib.suppress(ClusterError):
                self.ctr("tasks", "kill", "-s", "SIGKILL", task)
            with contextlib.suppress(ClusterError):
                self.ctr("tasks", "delete", "-f", task)
        for container in self.ctr("containers", "ls", "-q").split():
            with contextlib.suppress(ClusterError):
                self.ctr("containers", "delete", container)


def disk_short_for(image: int, disk: Any) -> str | None:
    """Why the disk (`shutil.disk_usage`) cannot take an image of `image` bytes, or None: containerd keeps its
    layers twice (the imported blobs and the unpacked snapshots), and the kubelet must still find more than its
    eviction floor free afterwards, or it deletes every image no pod runs (the pause image too) to get it back."""
    need = 2 * image + int(EVICTION_FLOOR * disk.total) + 2**30
    if disk.free >= need:
        return None
    gib = 2**30
    return (
        f"{disk.free / gib:.1f} GiB free on the cache's disk ({CACHE}), about {need / gib:.1f} GiB needed "
        f"(the image's {image / gib:.1f} GiB twice, the kubelet's {EVICTION_FLOOR:.0%} eviction floor, 1 GiB spare); "
        "free space there or point YOLO_OPERATOR_CACHE at a larger disk"
    )


def docker_inspect(image: str, field: str, docker_env: dict[str, str]) -> str:
    """`docker image inspect -f FIELD` of the image; empty where the engine does not have it."""
    return subprocess.run(
        ["docker", "image", "inspect", "-f", field, image],
        env=docker_env,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


def containerd_name(image: str) -> str:
    """The name containerd (and the kubelet) give a Docker reference: `yolo/x:1` is `docker.io/yolo/x:1`."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return image
    return f"docker.io/{image}" if rest else f"docker.io/library/{image}"


def oci_archive(build: Path, layer: Path, entrypoint: list[str]) -> Path:
    """A one-layer OCI image archive of `layer` (what `ctr images import` reads), written without Docker."""
    import hashlib
    import tarfile

    blobs = build / "oci" / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def blob(data: bytes) -> tuple[str, int]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}", len(data)

    layer_digest, layer_size = blob(layer.read_bytes())
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }
    config_digest, config_size = blob(json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    }
    manifest_digest, manifest_size = blob(json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest_size,
                "platform": {"architecture": "amd64", "os": "linux"},
            }
        ],
    }
    (build / "oci" / "index.json").write_text(json.dumps(index))
    (build / "oci" / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    archive = build / "pause-oci.tar"
    with tarfile.open(archive, "w") as tar:
        for item in ("oci-layout", "index.json", "blobs"):
            tar.add(build / "oci" / item, arcname=item)
    return archive
