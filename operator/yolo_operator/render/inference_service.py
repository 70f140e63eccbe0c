"""YoloInferenceService → the objects it runs as: a ConfigMap with the contract's ServeConfig, a Deployment of
`yolo-workload serve --config /etc/yolo/config.yaml`, a Service in front of it and, with more than one replica,
a PodDisruptionBudget.

Pure. Choices that keep the service answering while it changes:
- rolling update maxUnavailable 0 / maxSurge 1: a new pod must be Ready before an old one goes;
- readiness on /v2/health/ready (model loaded and warmed up), liveness on /v2/health/live, and a startup probe so a
  slow model load is not mistaken for a hung server;
- on termination a preStop sleep lets endpoints drop the pod before SIGTERM, then the server drains its queue
  within terminationGracePeriodSeconds;
- the pod template carries a hash of the config, so a serving change rolls the pods;
- /metrics on the serving port, announced with the prometheus.io annotations.
Weights are mounted read-only from their PersistentVolumeClaim at `/claims/<claimName>`, like the train pods do.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass
from typing import Any

import yaml
from yolo_workloads.contract import ModelSource, ServeConfig, ServeTuningConfig

from yolo_operator.api.inference_service import YoloInferenceService
from yolo_operator.render.common import (
    CONTAINER_SECURITY_CONTEXT,
    DEFAULT_IMAGE,
    POD_SECURITY_CONTEXT,
    WORKLOAD_CONTAINER,
    Owner,
    config_map,
    container_image,
    object_meta,
    placement,
    resource_requirements,
    selector_labels,
    shm_volume,
    standard_labels,
)

COMPONENT = "inference"
CONFIG_DIR = "/etc/yolo"
CONFIG_KEY = "config.yaml"
CLAIMS_ROOT = "/claims"
PORT_NAME = "http"
READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
METRICS_PATH = "/metrics"
CONFIG_HASH_ANNOTATION = "yolo-operator.io/config-hash"
PRE_STOP_SLEEP_S = 5
"""Time for endpoint controllers and load balancers to stop sending new requests before SIGTERM."""
DRAIN_S = 30
"""Time the server has after SIGTERM to answer what it queued."""


@dataclass(frozen=True)
class ModelMount:
    """Where the weights are: a file on a PersistentVolumeClaim (path relative to the volume's root)."""

    claim_name: str
    path: str

    @property
    def mount_path(self) -> str:
        return f"{CLAIMS_ROOT}/{self.claim_name}"

    @property
    def file(self) -> str:
        """The weights' path inside the serving pod."""
        return posixpath.join(self.mount_path, self.path.lstrip("/"))


@dataclass(frozen=True)
class RenderOptions:
    """What rendering takes from the operator's settings rather than from the spec."""

    default_image: str = DEFAULT_IMAGE


def owner_of(svc: YoloInferenceService) -> Owner:
    if not svc.metadata.uid:
        raise ValueError("metadata.uid: the resource must come from the API server (no uid to own children with)")
    return Owner(svc.api_version, svc.kind, svc.metadata.name, svc.metadata.namespace, svc.metadata.uid)


def deployment_name(name: str) -> str:
    return name


def service_name(name: str) -> str:
    return name


def config_map_name(name: str) -> str:
    return f"{name}-serve-config"


def pdb_name(name: str) -> str:
    return name


def selector_string(svc: YoloInferenceService) -> str:
    """The pods' label selector as a string: status.selector for the scale subresource."""
    labels = selector_labels(owner_of(svc), COMPONENT)
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def url(svc: YoloInferenceService) -> str:
    return f"http://{service_name(svc.metadata.name)}.{svc.metadata.namespace}.svc:{svc.spec.service.port}"


def serve_config(svc: YoloInferenceService, model: ModelMount) -> ServeConfig:
    s = svc.spec.serving
    return ServeConfig(
        model=ModelSource(weights=model.file),
        imgsz=s.imgsz,
        half=s.half,
        max_batch_size=s.max_batch_size,
        max_queue_delay_ms=s.max_queue_delay_ms,
        max_queue_size=s.max_queue_size,
        conf=s.conf,
        iou=s.iou,
        port=s.port,
        workers=s.workers,
        device="cpu" if svc.spec.resources.gpus == 0 else None,
        tuning=ServeTuningConfig(enabled=svc.spec.tuning.enabled, latency_slo_ms=svc.spec.tuning.latency_slo_ms),
    )


def render_config(config: ServeConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=True)


def wants_pdb(svc: YoloInferenceService, replicas: int) -> bool:
    """A PDB only protects something with more than one replica (or when the autoscaler may add some)."""
    a = svc.spec.autoscaling
    return replicas > 1 or (a.enabled and a.max_replicas > 1)


def _probe(path: str, period: int, failures: int, timeout: int = 2) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT_NAME},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": timeout,
    }


def deployment(
    svc: YoloInferenceService, model: ModelMount, replicas: int, config_text: str, options: RenderOptions
) -> dict[str, Any]:
    owner, spec = owner_of(svc), svc.spec
    port = spec.serving.port
    shm, shm_mount = shm_volume(spec.resources)
    volumes = [
        {"name": "config", "configMap": {"name": config_map_name(svc.metadata.name)}},
        shm,
        {"name": "weights", "persistentVolumeClaim": {"claimName": model.claim_name, "readOnly": True}},
    ]
    mounts = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        shm_mount,
        {"name": "weights", "mountPath": model.mount_path, "readOnly": True},
    ]
    container: dict[str, Any] = {
        "name": WORKLOAD_CONTAINER,
        "image": container_image(spec.resources, options.default_image),
        # No `command`: the image's entrypoint (`tini -- yolo-workload`) forwards SIGTERM and reaps workers.
        "args": ["serve", "--config", f"{CONFIG_DIR}/{CONFIG_KEY}"],
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}, {"name": "YOLO_OFFLINE", "value": "1"}],
        "ports": [{"name": PORT_NAME, "containerPort": port, "protocol": "TCP"}],
        "resources": resource_requirements(spec.resources),
        "securityContext": CONTAINER_SECURITY_CONTEXT,
        "readinessProbe": _probe(READY_PATH, 5, 3),
        "livenessProbe": _probe(LIVE_PATH, 10, 3),
        # model load and warm-up (and serving tuning) may take minutes: up to 10 min before liveness applies
        "startupProbe": _probe(LIVE_PATH, 5, 120),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SLEEP_S}}},
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
    }
    template_annotations = {
        CONFIG_HASH_ANNOTATION: hashlib.sha256(config_text.encode()).hexdigest()[:16],
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": METRICS_PATH,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(owner, deployment_name(svc.metadata.name), COMPONENT),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector_labels(owner, COMPONENT)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": standard_labels(owner, COMPONENT), "annotations": template_annotations},
                "spec": {
                    "automountServiceAccountToken": False,  # the server needs no API access
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": PRE_STOP_SLEEP_S + DRAIN_S,
                    "securityContext": POD_SECURITY_CONTEXT,
                    "containers": [container],
                    "volumes": volumes,
                    **placement(spec.resources),
                },
            },
        },
    }


def service(svc: YoloInferenceService) -> dict[str, Any]:
    owner = owner_of(svc)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(owner, service_name(svc.metadata.name), COMPONENT),
        "spec": {
            "type": svc.spec.service.type,
            "selector": selector_labels(owner, COMPONENT),
            "ports": [{"name": PORT_NAME, "port": svc.spec.service.port, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def pod_disruption_budget(svc: YoloInferenceService) -> dict[str, Any]:
    """maxUnavailable 1: a node drain takes one replica at a time, whatever the autoscaler set the count to."""
    owner = owner_of(svc)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_meta(owner, pdb_name(svc.metadata.name), COMPONENT),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(owner, COMPONENT)}},
    }


def objects(
    svc: YoloInferenceService, model: ModelMount, replicas: int, options: RenderOptions
) -> list[dict[str, Any]]:
    """Everything the service runs as, in apply order (the ConfigMap before the pods that mount it)."""
    text = render_config(serve_config(svc, model))
    cm = config_map(owner_of(svc), config_map_name(svc.metadata.name), COMPONENT, {CONFIG_KEY: text})
    result = [cm, deployment(svc, model, replicas, text, options), service(svc)]
    if wants_pdb(svc, replicas):
        result.append(pod_disruption_budget(svc))
    return result
