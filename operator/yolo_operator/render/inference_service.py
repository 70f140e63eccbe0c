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
Weights are mounted read-only from their PersistentVolumeClaim at `/claims/<claimName>`, like the train pods do;
weights by URI are fetched by the init container `fetch` (render.sources) into `/sources/weights.pt`, cached per
content in `spec.sourceCache` (shared by replicas) or an emptyDir.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from yolo_workloads.contract import (
    DEFAULT_TASK,
    LIVE_PATH,
    METRICS_PATH,
    READY_PATH,
    ModelSource,
    ServeConfig,
    ServeTuningConfig,
    Task,
)

from yolo_operator.api.inference_service import YoloInferenceService
from yolo_operator.api.sources import WeightsSource
from yolo_operator.render.common import (
    CLAIMS_ROOT,
    CONFIG_DIR,
    CONFIG_HASH_ANNOTATION,
    CONFIG_KEY,
    CONTAINER_SECURITY_CONTEXT,
    DEFAULT_IMAGE,
    POD_SECURITY_CONTEXT,
    WORKLOAD_CONTAINER,
    config_hash,
    config_map,
    config_text,
    config_yaml,
    container_image,
    object_meta,
    owner_of,
    placement,
    resource_requirements,
    selector_labels,
    shm_volume,
    standard_labels,
    workload_env,
)
from yolo_operator.render.sources import (
    CACHE_DIR,
    FETCH_CONFIG_KEY,
    SOURCES_DIR,
    WEIGHTS_LINK,
    Fetches,
    apply_overrides,
    configmap_data,
    fetch_container,
)

COMPONENT = "inference"
PORT_NAME = "http"
PRE_STOP_SLEEP_S = 5
"""Time for endpoint controllers and load balancers to stop sending new requests before SIGTERM."""
DRAIN_S = 30
"""Time the server has after SIGTERM to answer what it queued."""


@dataclass(frozen=True)
class ModelMount:
    """Where the weights are: a file on a PersistentVolumeClaim (path relative to the volume's root), or a URI
    fetched by the init container (`source`; claim_name and path then unused)."""

    claim_name: str
    path: str
    source: WeightsSource | None = None
    task: Task | None = None
    """The weights' task when known before loading them (the task of the YoloTrainJob that trained them)."""

    @property
    def mount_path(self) -> str:
        return f"{CLAIMS_ROOT}/{self.claim_name}"

    @property
    def file(self) -> str:
        """The weights' path inside the serving pod."""
        if self.source is not None:
            return WEIGHTS_LINK
        return posixpath.join(self.mount_path, self.path.lstrip("/"))


@dataclass(frozen=True)
class RenderOptions:
    """What rendering takes from the operator's settings rather than from the spec."""

    default_image: str = DEFAULT_IMAGE


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
        task=svc.spec.task or model.task or DEFAULT_TASK,
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


def fetches(svc: YoloInferenceService, model: ModelMount) -> Fetches:
    """The weights to fetch before the server starts (none for weights on a volume)."""
    result = Fetches()
    if svc.spec.source_cache is not None:
        cache = svc.spec.source_cache
        result.cache_dir = posixpath.normpath(posixpath.join(f"{CLAIMS_ROOT}/{cache.claim_name}", cache.path))
    if model.source is not None:
        result.add("spec.model.source", model.source, model.source.uri, WEIGHTS_LINK)
    return result


def config_data(svc: YoloInferenceService, model: ModelMount) -> dict[str, str]:
    """The ConfigMap data: the serving config (with its unset fields, as it always was: the text is hashed into
    the pod template) and, when the weights come from a URI, the fetch step's."""
    return configmap_data(config_yaml(serve_config(svc, model), exclude_none=False), fetches(svc, model))


def _storage(svc: YoloInferenceService, model: ModelMount) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The weights' volumes and mounts: their claim, or the links and the cache of fetched weights."""
    if model.source is None:
        volume = {"name": "weights", "persistentVolumeClaim": {"claimName": model.claim_name, "readOnly": True}}
        return [volume], [{"name": "weights", "mountPath": model.mount_path, "readOnly": True}]
    volumes: list[dict[str, Any]] = [{"name": "sources", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "sources", "mountPath": SOURCES_DIR}]
    cache = svc.spec.source_cache
    if cache is not None:
        volumes.append({"name": "source-cache", "persistentVolumeClaim": {"claimName": cache.claim_name}})
        mounts.append({"name": "source-cache", "mountPath": f"{CLAIMS_ROOT}/{cache.claim_name}"})
    else:
        volumes.append({"name": "source-cache", "emptyDir": {}})
        mounts.append({"name": "source-cache", "mountPath": CACHE_DIR})
    return volumes, mounts


def deployment(
    svc: YoloInferenceService, model: ModelMount, replicas: int, hashed_config: str, options: RenderOptions
) -> dict[str, Any]:
    """The serving pods; `hashed_config` (config_text of the ConfigMap's data) goes into their template's hash."""
    owner, spec = owner_of(svc), svc.spec
    port = spec.serving.port
    shm, shm_mount = shm_volume(spec.resources)
    todo = fetches(svc, model)
    weight_volumes, weight_mounts = _storage(svc, model)
    config_mount = {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}
    volumes = [
        {"name": "config", "configMap": {"name": config_map_name(svc.metadata.name)}},
        shm,
        *weight_volumes,
        *todo.volumes,
    ]
    mounts = [config_mount, shm_mount, *weight_mounts]
    container: dict[str, Any] = {
        "name": WORKLOAD_CONTAINER,
        "image": container_image(spec.resources, options.default_image),
        # No `command`: the image's entrypoint (`tini -- yolo-workload`) forwards SIGTERM and reaps workers.
        "args": ["serve", "--config", f"{CONFIG_DIR}/{CONFIG_KEY}"],
        "env": workload_env(),
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
        CONFIG_HASH_ANNOTATION: config_hash(hashed_config),
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": METRICS_PATH,
    }
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,  # the server needs no API access
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": PRE_STOP_SLEEP_S + DRAIN_S,
        "securityContext": POD_SECURITY_CONTEXT,
        "containers": [container],
        "volumes": volumes,
        **placement(spec.resources),
    }
    if todo.sources:
        init_mounts = [config_mount, *weight_mounts, *todo.mounts]
        pod_spec["initContainers"] = [
            fetch_container(
                container["image"],
                container["resources"],
                CONTAINER_SECURITY_CONTEXT,
                init_mounts,
                f"{CONFIG_DIR}/{FETCH_CONFIG_KEY}",
            )
        ]
    metadata = {"labels": standard_labels(owner, COMPONENT), "annotations": template_annotations}
    apply_overrides(pod_spec, metadata, container, spec.pod_overrides)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(owner, deployment_name(svc.metadata.name), COMPONENT),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector_labels(owner, COMPONENT)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": metadata, "spec": pod_spec},
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
    data = config_data(svc, model)
    text = config_text(data)
    cm = config_map(owner_of(svc), config_map_name(svc.metadata.name), COMPONENT, data)
    result = [cm, deployment(svc, model, replicas, text, options), service(svc)]
    if wants_pdb(svc, replicas):
        result.append(pod_disruption_budget(svc))
    return result
