"""Scale benchmark on the real control plane: hundreds of fake GPU nodes, a thousand YoloTrainJobs and hundreds of
YoloInferenceServices applied in bursts, the operator running as a subprocess (as in its Deployment).

Why: platform teams need to know the operator keeps up and stays small at pool scale. Not part of CI (minutes of
wall clock, all cores). Measures: apply → children created (p50/p99, from watches), a child's change → the
resource's status (p50/p99), the operator's peak RSS and CPU, API requests per reconcile (the API server's own
apiserver_request_total before/after, over the operator's reconcile counter), WATCH requests (watch
(re)connections), the Events by who posted them, the operator's child writes applied and skipped, and error-level
log lines. `--profile` runs the operator under py-spy (speedscope + top table).

The operator's start-up is timed to its readiness (`/healthz` and `/metrics` answering) and nothing is applied
before it, so the bursts measure the running operator. Its throughput is reported beside the apply rate:
reconciles/s and CPU-seconds per reconcile over the apply phase, and `capacity_objects_per_s`, the objects one core
of the operator handles per second at the measured CPU cost (objects / operator CPU-seconds of the apply phase), so
`headroom` = capacity / apply rate says how far the operator is from falling behind. The scenario runs `--runs`
times (2 by default), each on a new control plane, and the summary reports the slower run (higher p99).

    nice python benchmarks/scale_kwok.py --nodes 500 --jobs 1000 --services 300 --out .work/scale
    nice python benchmarks/scale_kwok.py --nodes 100 --jobs 200 --services 60 --runs 1 --profile --out .work/scale-small
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from cluster import harness  # noqa: E402  (tests/cluster: the control plane harness)
from cluster.operator_fixture import install_crds, operator_identity  # noqa: E402
from kubernetes import client, config, watch  # noqa: E402
from ports import free_ports  # noqa: E402  (tests/ports.py)
from yolo_workloads.contract import TrainSummary, encode_result  # noqa: E402

GROUP, VERSION = "yolo-operator.io", "v1alpha1"


class ScaleCluster(harness.Cluster):
    """The test cluster with a /16 service range: kwokctl's default /24 runs out of ClusterIPs at ~250 Services."""

    def _config_path(self) -> Path:
        path = super()._config_path()
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        patch = {"name": "kube-apiserver", "extraArgs": [{"key": "service-cluster-ip-range", "value": "10.96.0.0/16"}]}
        docs[0].setdefault("componentsPatches", []).append(patch)
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        return path


def fake_nodes(count: int) -> list[dict[str, Any]]:
    template = harness.load_yaml_documents(ROOT / "tests/cluster/kwok/nodes.yaml")[0]
    out = []
    for i in range(count):
        n = copy.deepcopy(template)
        name = f"scale-node-{i}"
        n["metadata"]["name"] = name
        n["metadata"]["labels"]["kubernetes.io/hostname"] = name
        n["status"]["addresses"] = [
            {"type": "InternalIP", "address": f"10.129.{i // 250}.{i % 250 + 1}"},
            {"type": "Hostname", "address": name},
        ]
        out.append(n)
    return out


def train_job(name: str) -> dict[str, Any]:
    spec = {
        "model": {"architecture": "yolov8n.yaml"},
        "data": {"shapes": {"images": 64}},
        "train": {"epochs": 3, "imgsz": 320},
        "tuning": {"enabled": False},
        "resources": {"gpus": 1, "cpu": 4, "memory": "16Gi", "shmSize": "1Gi"},
    }
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "YoloTrainJob", "metadata": {"name": name}, "spec": spec}


def inference_service(name: str) -> dict[str, Any]:
    spec = {
        "model": {"weights": {"claimName": "models", "path": "yolo/best.pt"}},
        "replicas": 1,
        "autoscaling": {"enabled": False},
        "resources": {"gpus": 1, "cpu": 8, "memory": "16Gi"},
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "YoloInferenceService",
        "metadata": {"name": name},
        "spec": spec,
    }


def bound_claim(namespace: str) -> list[dict[str, Any]]:
    pv = f"{namespace}-models"
    return [
        {
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": "",
                "hostPath": {"path": f"/tmp/{pv}"}, "claimRef": {"namespace": namespace, "name": "models"},
            },
        },
        {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "models", "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": pv,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    ]  # fmt: skip


class Watcher:
    """First time each object is seen (children) and when each resource's status.phase took each value."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.first_seen: dict[tuple[str, str, str], float] = {}
        self.phase_at: dict[tuple[str, str, str], float] = {}
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def _loop(self, kind: str, list_fn: Any, **kw: Any) -> None:
        while not self.stop.is_set():
            try:
                for ev in watch.Watch().stream(list_fn, timeout_seconds=30, **kw):
                    obj = ev["object"]
                    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
                    ns = meta["namespace"] if isinstance(meta, dict) else meta.namespace
                    name = meta["name"] if isinstance(meta, dict) else meta.name
                    now = time.monotonic()
                    self.first_seen.setdefault((kind, ns, name), now)
                    if isinstance(obj, dict):
                        ph = (obj.get("status") or {}).get("phase")
                        if ph:
                            self.phase_at.setdefault((ns, name, ph), now)
                    elif kind == "Job" and any(
                        c.type in ("Complete", "SuccessCriteriaMet") and c.status == "True"
                        for c in ((obj.status.conditions if obj.status else None) or [])
                    ):
                        self.phase_at.setdefault((ns, name, "JobComplete"), now)
                    if self.stop.is_set():
                        return
            except Exception as exc:  # the benchmark's own watch: reconnect
                print(f"[watch {kind}] {exc}", file=sys.stderr)
                time.sleep(0.5)

    def start(self) -> None:
        batch, apps, co = client.BatchV1Api(self.api), client.AppsV1Api(self.api), client.CustomObjectsApi(self.api)
        targets = [
            ("Job", batch.list_job_for_all_namespaces, {}),
            ("Deployment", apps.list_deployment_for_all_namespaces, {}),
            ("YoloTrainJob", co.list_cluster_custom_object, {"group": GROUP, "version": VERSION, "plural": "yolotrainjobs"}),
        ]  # fmt: skip
        for kind, fn, kw in targets:
            t = threading.Thread(target=self._loop, args=(kind, fn), kwargs=kw, daemon=True)
            t.start()
            self.threads.append(t)


class Sampler:
    """The operator process's RSS and CPU from /proc, every 0.5 s."""

    def __init__(self, pid: int) -> None:
        self.pid, self.stop = pid, threading.Event()
        self.samples: list[tuple[float, float, float]] = []  # (t, rss MiB, cpu seconds)
        self.peak_hwm_mib = 0.0
        threading.Thread(target=self._loop, daemon=True).start()

    def _pids(self) -> list[int]:
        # py-spy runs the operator as its child: follow the python process under it too.
        kids = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        children = [int(c) for c in kids.read_text().split()] if kids.exists() else []
        return [self.pid, *children]

    def _loop(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        while not self.stop.is_set():
            rss = cpu = 0.0
            try:
                for pid in self._pids():
                    status = Path(f"/proc/{pid}/status").read_text()
                    if "python" not in Path(f"/proc/{pid}/cmdline").read_text():
                        continue
                    rss += int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
                    hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
                    self.peak_hwm_mib = max(self.peak_hwm_mib, hwm)
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    cpu += (int(fields[11]) + int(fields[12])) / tick
            except (OSError, AttributeError):
                pass
            self.samples.append((time.monotonic(), rss, cpu))
            time.sleep(0.5)


def request_counts(cluster: harness.Cluster) -> dict[str, float]:
    """apiserver_request_total summed by verb/resource/subresource, and apiserver_watch_events_total (events sent
    to all watchers) as "EVENTS <resource>"."""
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("apiserver_watch_events_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            key = f"EVENTS {labels.get('resource') or labels.get('kind')}"
        elif line.startswith("apiserver_request_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            key = f"{labels.get('verb')} {labels.get('resource')}" + (
                f"/{labels['subresource']}" if labels.get("subresource") else ""
            )
        else:
            continue
        out[key] = out.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def operator_counter(port: int, name: str, having: str = "") -> float:
    """The sum of a counter over its series (those whose labels include `having`)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return float("nan")
    lines = (line for line in text.splitlines() if line.startswith(name + "{") and having in line)
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def wait_ready(op: subprocess.Popen[bytes], health_port: int, metrics_port: int, timeout_s: float) -> float:
    """Seconds from now until the operator answers its liveness probe (`/healthz`, what the Deployment's readiness
    probe asks) and serves `/metrics`; raises if it exits or takes longer than `timeout_s`."""
    start = time.monotonic()
    pending = [f"http://127.0.0.1:{health_port}/healthz", f"http://127.0.0.1:{metrics_port}/metrics"]
    while pending:
        if op.poll() is not None:
            raise RuntimeError(f"the operator exited with {op.returncode} before it was ready")
        if time.monotonic() - start > timeout_s:
            raise RuntimeError(f"the operator was not ready within {timeout_s} s ({pending[0]} did not answer)")
        try:
            with urllib.request.urlopen(pending[0], timeout=2) as response:
                if response.status == 200:
                    pending.pop(0)
                    continue
        except OSError:
            pass
        time.sleep(0.1)
    return time.monotonic() - start


def cpu_seconds_between(samples: list[tuple[float, float, float]], t0: float, t1: float) -> float:
    """The operator's CPU-seconds between two monotonic times, from the sampler's cumulative readings."""
    inside = [cpu for t, _, cpu in samples if t0 <= t <= t1]
    before = [cpu for t, _, cpu in samples if t < t0]
    if not inside:
        return float("nan")
    return inside[-1] - (before[-1] if before else inside[0])


def throughput(created: dict[Any, float], children_done: float, reconciles: float, cpu_s: float) -> dict[str, float]:
    """The operator's pace over the apply phase (first create → last child seen) beside the apply rate."""
    first, last = min(created.values()), max(created.values())
    apply_rate = len(created) / max(last - first, 1e-9)
    phase = max(children_done - first, 1e-9)
    capacity = len(created) / cpu_s if cpu_s > 0 else float("nan")
    return {
        "apply_rate_per_s": apply_rate,
        "objects_per_s": len(created) / phase,
        "reconciles_per_s": reconciles / phase,
        "cpu_seconds": cpu_s,
        "cpu_seconds_per_reconcile": cpu_s / reconciles if reconciles else float("nan"),
        "capacity_objects_per_s": capacity,
        "headroom": capacity / apply_rate,
    }


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=500)
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--services", type=int, default=300)
    p.add_argument("--namespaces", type=int, default=10)
    p.add_argument("--burst", type=int, default=100, help="objects created at once")
    p.add_argument("--pause", type=float, default=3.0, help="seconds between bursts")
    p.add_argument("--finish", type=int, default=100, help="training pods finished to time status updates")
    p.add_argument("--profile", action="store_true", help="run the operator under py-spy record")
    p.add_argument("--node-cache-s", type=float, default=0.0, help="EXPERIMENT: cache the operator's node list")
    p.add_argument("--max-workers", type=int, default=0, help="EXPERIMENT: Kopf's handler thread pool size")
    p.add_argument("--runs", type=int, default=2, help="times to run the scenario; the summary reports the slower")
    p.add_argument("--ready-timeout", type=float, default=180.0, help="seconds the operator may take to be ready")
    p.add_argument("--out", type=Path, default=ROOT / ".work" / "scale")
    args = p.parse_args(argv)
    reports = []
    for run in range(1, args.runs + 1):
        out = args.out / f"run{run}" if args.runs > 1 else args.out
        reports.append(run_once(args, out))
    slower = max(reports, key=lambda r: r["apply_to_children_s"]["all"]["p99"])
    summary = {"runs": len(reports), "slower_run": reports.index(slower) + 1, "slower": _headline(slower)}
    summary["each"] = [_headline(r) for r in reports]
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


def _headline(report: dict[str, Any]) -> dict[str, Any]:
    """What the targets are about: latency, throughput beside the apply rate, start-up, memory, errors."""
    return {
        "p99_apply_to_children_s": report["apply_to_children_s"]["all"]["p99"],
        "p50_apply_to_children_s": report["apply_to_children_s"]["all"]["p50"],
        "ready_s": report["operator_ready_s"],
        **report["throughput"],
        "peak_rss_mib": report["operator"]["peak_rss_mib"],
        "error_log_lines": report["error_log_lines"],
    }


def run_once(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """One scenario on a new control plane; its report is written to `out/report.json` and returned."""
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}

    workdir = Path(tempfile.mkdtemp(prefix="yolo-cluster-scale-"))
    (workdir / "owner.pid").write_text(str(os.getpid()))
    cluster = ScaleCluster.start(harness.build_binaries(), workdir)
    op: subprocess.Popen[bytes] | None = None
    try:
        t0 = time.monotonic()
        nodes = fake_nodes(args.nodes)
        for i in range(0, len(nodes), 100):
            cluster.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(nodes[i : i + 100]))
        harness.wait_until(
            lambda: sum(harness.node_is_ready(n) for n in cluster.get_json("nodes")["items"]) >= args.nodes + 4,
            600, f"{args.nodes} fake nodes Ready", interval_s=2,
        )  # fmt: skip
        report["nodes_ready_s"] = time.monotonic() - t0
        print(f"{args.nodes} nodes Ready in {report['nodes_ready_s']:.1f} s", flush=True)
        install_crds(cluster)
        kubeconfig = operator_identity(cluster)
        namespaces = [f"hold-scale-{i}" for i in range(args.namespaces)]
        for ns in namespaces:
            cluster.create_namespace(ns)
            cluster.apply(*bound_claim(ns))

        metrics_port, health_port = free_ports(2)
        env = {
            **os.environ,
            "YOLO_OPERATOR_METRICS_PORT": str(metrics_port),
            "YOLO_OPERATOR_HEALTH_PORT": str(health_port),
            "YOLO_OPERATOR_DEFAULT_IMAGE": "registry.example/yolo-workload:scale",
            # kwok's pod IPs are not reachable from here: the progress scrape would only measure timeouts.
            "YOLO_OPERATOR_PROGRESS_PERIOD_SECONDS": "3600",
        }
        cmd = [sys.executable, "-m", "yolo_operator.cli", "controller", "--kubeconfig", str(kubeconfig)]
        if args.node_cache_s > 0 or args.max_workers > 0:
            env["SCALE_NODE_CACHE_S"] = str(args.node_cache_s)
            env["SCALE_MAX_WORKERS"] = str(args.max_workers)
            cmd = [sys.executable, __file__, "_operator_node_cache", "controller", "--kubeconfig", str(kubeconfig)]
        if args.profile:
            spy = str(Path(sys.executable).parent / "py-spy")
            cmd = [spy, "record", "--subprocesses", "--rate", "50", "--format", "speedscope",
                   "-o", str(out / "profile.speedscope.json"), "--", *cmd]  # fmt: skip
        log_path = out / "operator.log"
        with open(log_path, "wb") as log:
            op = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        sampler = Sampler(op.pid)
        report["operator_ready_s"] = wait_ready(op, health_port, metrics_port, args.ready_timeout)
        print(f"operator ready in {report['operator_ready_s']:.1f} s", flush=True)
        config.load_kube_config(str(cluster.kubeconfig))
        api = client.ApiClient()
        api.configuration.connection_pool_maxsize = 16  # type: ignore[attr-defined]
        co = client.CustomObjectsApi(api)
        watcher = Watcher(api)
        watcher.start()
        time.sleep(1)  # the benchmark's own watches connect
        before = request_counts(cluster)
        rec_before = operator_counter(metrics_port, "yolo_operator_reconciles_total")

        objects = [("YoloTrainJob", "yolotrainjobs", train_job(f"ytj-{i}")) for i in range(args.jobs)]
        svc = [("YoloInferenceService", "yoloinferenceservices", inference_service(f"yis-{i}")) for i in range(args.services)]  # fmt: skip
        # Interleave the kinds so every burst carries both.
        step = max(1, len(objects) // max(1, len(svc)))
        mixed: list[tuple[str, str, dict[str, Any]]] = []
        for i, o in enumerate(objects):
            mixed.append(o)
            if i % step == step - 1 and svc:
                mixed.append(svc.pop())
        mixed.extend(svc)
        created: dict[tuple[str, str, str], float] = {}

        def create(idx: int, item: tuple[str, str, dict[str, Any]]) -> None:
            kind, plural, body = item
            ns = namespaces[idx % len(namespaces)]
            co.create_namespaced_custom_object(GROUP, VERSION, ns, plural, body)
            created[(kind, ns, body["metadata"]["name"])] = time.monotonic()

        apply_start = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            for b in range(0, len(mixed), args.burst):
                list(pool.map(lambda a: create(*a), [(i, mixed[i]) for i in range(b, min(len(mixed), b + args.burst))]))
                print(f"burst {b // args.burst + 1}: {min(len(mixed), b + args.burst)} objects", flush=True)
                time.sleep(args.pause)

        def child_of(key: tuple[str, str, str]) -> tuple[str, str, str]:
            kind, ns, name = key
            return ("Job", ns, f"{name}-train") if kind == "YoloTrainJob" else ("Deployment", ns, name)

        try:
            harness.wait_until(
                lambda: all(child_of(k) in watcher.first_seen for k in created), 300, "every child", interval_s=0.2
            )
        except harness.ClusterError as exc:
            print(exc, file=sys.stderr)
        report["apply_phase_s"] = time.monotonic() - apply_start
        children_done = max((watcher.first_seen.get(child_of(k), 0.0) for k in created), default=apply_start)
        rec_applied = operator_counter(metrics_port, "yolo_operator_reconciles_total")
        report["throughput"] = throughput(
            created, children_done, rec_applied - rec_before,
            cpu_seconds_between(sampler.samples, min(created.values()), children_done),
        )  # fmt: skip
        lat = {"YoloTrainJob": [], "YoloInferenceService": []}  # type: dict[str, list[float]]
        missing = 0
        for key, t in created.items():
            seen = watcher.first_seen.get(child_of(key))
            if seen is None:
                missing += 1
            else:
                lat[key[0]].append(max(0.0, seen - t))
        everything = lat["YoloTrainJob"] + lat["YoloInferenceService"]
        report["apply_to_children_s"] = {
            k: {"n": len(v), "p50": pct(v, 50), "p99": pct(v, 99), "max": max(v, default=float("nan"))}
            for k, v in {**lat, "all": everything}.items()
        }
        report["children_missing"] = missing

        # A child's change → the resource's status: finish training pods, time until phase Succeeded.
        time.sleep(3)
        core = client.CoreV1Api(api)
        finished: dict[tuple[str, str], float] = {}
        picked = [k for k in created if k[0] == "YoloTrainJob"][: args.finish]
        for _, ns, name in picked:
            pods = core.list_namespaced_pod(ns, label_selector=f"batch.kubernetes.io/job-name={name}-train").items
            running = [q.metadata.name for q in pods if q.status and q.metadata and q.status.phase == "Running"]
            if not running:
                continue
            msg = encode_result(TrainSummary(best_weights="/o/best.pt", last_weights="/o/last.pt", results_dir="/o", epochs_completed=3))  # fmt: skip
            ann = {"kwok.yolo-operator.io/exit-code": "0", "kwok.yolo-operator.io/message": msg}
            core.patch_namespaced_pod(str(running[0]), ns, {"metadata": {"annotations": ann}})
            finished[(ns, name)] = time.monotonic()
        try:
            harness.wait_until(
                lambda: all((ns, n, "Succeeded") in watcher.phase_at for ns, n in finished), 120, "Succeeded",
                interval_s=1,
            )  # fmt: skip
        except harness.ClusterError as exc:
            print(exc, file=sys.stderr)
        status_lat = [watcher.phase_at[(ns, n, "Succeeded")] - t for (ns, n), t in finished.items() if (ns, n, "Succeeded") in watcher.phase_at]  # fmt: skip
        # Split: the pod's finish -> the Job's completion (kwok and the Job controller), then the Job's completion
        # -> the resource's Succeeded (the operator's share).
        job_done = {k: watcher.phase_at.get((k[0], f"{k[1]}-train", "JobComplete")) for k in finished}
        control_plane = [job_done[k] - t for k, t in finished.items() if job_done[k] is not None]  # type: ignore[operator]
        operator_share = [
            watcher.phase_at[(ns, n, "Succeeded")] - job_done[(ns, n)]  # type: ignore[operator]
            for (ns, n) in finished
            if (ns, n, "Succeeded") in watcher.phase_at and job_done[(ns, n)] is not None
        ]
        report["child_change_to_status_s"] = {
            "n": len(status_lat), "of": len(finished), "p50": pct(status_lat, 50), "p99": pct(status_lat, 99),
            "pod_finish_to_job_complete": {"n": len(control_plane), "p50": pct(control_plane, 50), "p99": pct(control_plane, 99)},
            "job_complete_to_status": {"n": len(operator_share), "p50": pct(operator_share, 50), "p99": pct(operator_share, 99)},
        }  # fmt: skip
        time.sleep(5)  # let resyncs run at steady state

        after = request_counts(cluster)
        rec_after = operator_counter(metrics_port, "yolo_operator_reconciles_total")
        delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
        delta = {k: v for k, v in sorted(delta.items(), key=lambda kv: -kv[1]) if v > 0}
        # What only the operator sends: everything on the two kinds except the benchmark's own creates, the
        # operator's writes and reads of children, its pod lists. (Controllers and kwok use informers, not GETs;
        # their PATCH/PUT of pods and nodes are left out.)
        mine = 0.0
        owner_gets: dict[str, float] = {}
        for k, v in delta.items():
            verb, res = k.split(" ", 1)
            if verb == "EVENTS":
                continue
            if verb == "GET" and res in ("yolotrainjobs", "yoloinferenceservices"):
                # Not the operator's (it reads both kinds from its watches): the garbage collector's lookup of an
                # owner it has not seen yet when a child appears (a "virtual" node in its graph: attemptToDeleteItem
                # GETs it).
                owner_gets[res] = v
            elif res.startswith(("yolotrainjobs", "yoloinferenceservices")):
                # minus the benchmark's own creates of that kind (not all of them from each kind's count)
                mine += v - (sum(1 for k in created if k[0].lower() + "s" == res) if verb == "POST" else 0)
            # Also the operator's: LIST of a resource's Jobs, of nodes; PDB deletes (GET nodes is kwok's, not ours).
            elif (res in ("jobs", "configmaps", "deployments", "services", "poddisruptionbudgets", "persistentvolumeclaims") and verb in ("GET", "POST", "PATCH", "APPLY")) or (res == "pods" and verb == "LIST") or (verb, res) in (("LIST", "jobs"), ("LIST", "nodes"), ("DELETE", "poddisruptionbudgets")):  # fmt: skip
                mine += v
        reconciles = rec_after - rec_before
        # Who posted the Events (POST events above counts everyone's: the Job, ReplicaSet and Deployment
        # controllers and the scheduler post most of them): by reporting component, the operator's by reason.
        posted: dict[str, float] = {}
        for ns in namespaces:
            for e in core.list_namespaced_event(ns).items:
                who = e.reporting_component or (e.source.component if e.source else None) or "?"
                key = f"{who} {e.reason}" if who == "yolo-operator" else who
                posted[key] = posted.get(key, 0) + (e.count or 1)
        report["api"] = {
            "operator_requests": mine, "reconciles": reconciles, "owner_gets_by_gc": owner_gets,
            "requests_per_reconcile": mine / reconciles if reconciles else float("nan"),
            "requests_per_resource": mine / len(created) if created else float("nan"),
            "watch_requests": {k: v for k, v in delta.items() if k.startswith("WATCH")},
            "events_posted": dict(sorted(posted.items(), key=lambda kv: -kv[1])),
            "child_writes": {
                outcome: operator_counter(metrics_port, "yolo_operator_child_writes_total", f'outcome="{outcome}"')
                for outcome in ("applied", "skipped")
            },
            "watch_events_sent": {k.split(" ", 1)[1]: v for k, v in delta.items() if k.startswith("EVENTS")},
            "top": dict([kv for kv in delta.items() if not kv[0].startswith("EVENTS")][:25]),
            "reads": {k: v for k, v in delta.items() if k.startswith(("GET ", "LIST "))},  # everyone's, all of them
        }  # fmt: skip
        s = sampler.samples
        cpu_total = s[-1][2] - s[0][2] if s else float("nan")
        peaks = [(b[2] - a[2]) / (b[0] - a[0]) for a, b in zip(s, s[2:], strict=False) if b[0] > a[0]]
        report["operator"] = {
            "peak_rss_mib": sampler.peak_hwm_mib,
            "rss_end_mib": s[-1][1] if s else float("nan"),
            "cpu_seconds": cpu_total,
            "peak_cpu_cores_1s": max(peaks, default=float("nan")),
            "mean_cpu_cores": cpu_total / (s[-1][0] - s[0][0]) if len(s) > 1 else float("nan"),
        }
        watcher.stop.set()
    finally:
        if op is not None:
            # py-spy writes its profile on SIGINT (and passes it on to the operator, which stops on it too).
            op.send_signal(signal.SIGINT if args.profile else signal.SIGTERM)
            try:
                op.wait(60)
            except subprocess.TimeoutExpired:
                op.kill()
        cluster.stop()
        harness.remove_tree(workdir)
    log_text = (out / "operator.log").read_text(errors="replace")
    errors = [ln for ln in log_text.splitlines() if " ERROR " in ln or ln.startswith("Traceback")]
    report["error_log_lines"] = len(errors)
    report["error_log_sample"] = errors[:10]
    report["watch_reconnect_log_lines"] = sum("watch" in ln.lower() and "retry" in ln.lower() for ln in log_text.splitlines())  # fmt: skip
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k not in ("error_log_sample",)}, indent=2))
    return report


def operator_with_node_cache(argv: list[str]) -> int:
    """EXPERIMENT (--node-cache-s): the operator with its node list cached for a few seconds, to measure what the
    profile's top cost (a LIST of every node in each not-yet-started YoloTrainJob's reconcile) is worth. The real
    fix belongs in the controller (an informer or TTL cache of eligible nodes); this only patches Kube.list."""
    from yolo_operator import cli
    from yolo_operator.k8s.client import Kube

    ttl = float(os.environ["SCALE_NODE_CACHE_S"])
    original = Kube.list
    cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}
    lock = threading.Lock()

    def cached_list(self: Kube, api_version: str, kind: str, *a: Any, **kw: Any) -> list[dict[str, Any]]:
        if (api_version, kind) != ("v1", "Node") or a or kw:
            return original(self, api_version, kind, *a, **kw)
        with lock:
            hit = cache.get("nodes")
            if hit and time.monotonic() - hit[0] < ttl:
                return hit[1]
        nodes = original(self, api_version, kind)
        with lock:
            cache["nodes"] = (time.monotonic(), nodes)
        return nodes

    if ttl > 0:
        Kube.list = cached_list  # type: ignore[method-assign]
    workers = int(os.environ.get("SCALE_MAX_WORKERS", "0"))
    if workers:
        # EXPERIMENT (--max-workers): Kopf runs sync handlers in a thread pool of min(32, cores + 4) threads.
        from yolo_operator import main as operator_main

        original_settings = operator_main.kopf_settings

        def more_workers(settings: Any) -> Any:
            ks = original_settings(settings)
            ks.execution.max_workers = workers
            return ks

        operator_main.kopf_settings = more_workers  # type: ignore[assignment]
    return cli.main(argv)


if __name__ == "__main__":
    if sys.argv[1:2] == ["_operator_node_cache"]:
        raise SystemExit(operator_with_node_cache(sys.argv[2:]))
    raise SystemExit(main())
