"""The operator's settings: one typed object read from `YOLO_OPERATOR_*` environment variables, validated at start.

Both controllers (YoloTrainJob, YoloInferenceService) and the Kopf startup read it; nothing else reads os.environ.
A bad value stops the operator at once with a message naming the variable and what it expects.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator
from yolo_workloads.contract import TRAIN_METRICS_PORT

from yolo_operator.render.common import DEFAULT_IMAGE

ENV_PREFIX = "YOLO_OPERATOR_"
CACHE_ENV = "YOLO_OPERATOR_CACHE"
"""The project's cache folder (set-up scripts, `yolo-operator run`'s tuning cache): shares the prefix, is not a
setting of the controller, so the controller must not refuse it."""
PERSISTENCE_PREFIX = "yolo-operator.io"


# The kubelet injects Docker-link style variables for every Service in the pod's namespace (unless the pod sets
# `enableServiceLinks: false`): a Service `yolo-operator-metrics` yields YOLO_OPERATOR_METRICS_SERVICE_HOST,
# YOLO_OPERATOR_METRICS_PORT=tcp://10.0.0.7:8080, YOLO_OPERATOR_METRICS_PORT_8080_TCP_ADDR, ... They are not
# settings, and must neither stop the operator nor be read as one (METRICS_PORT would collide with a real setting).
_SERVICE_LINK_NAME = re.compile(r"_SERVICE_(HOST|PORT)(_[A-Z0-9_]+)?$|_PORT_\d+_(TCP|UDP|SCTP)(_(ADDR|PORT|PROTO))?$")
_SERVICE_LINK_VALUE = re.compile(r"^(tcp|udp|sctp)://[^\s]+:\d+$")


def is_service_link(name: str, value: str) -> bool:
    """True for a variable the kubelet derived from a Service, not one a person set."""
    return bool(_SERVICE_LINK_NAME.search(name)) or (name.endswith("_PORT") and bool(_SERVICE_LINK_VALUE.match(value)))


class SettingsError(ValueError):
    """Settings that do not validate; the message names every bad variable."""


class OperatorSettings(BaseModel):
    """Every knob of the operator. Field `foo_bar` is read from `YOLO_OPERATOR_FOO_BAR`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespaces: tuple[str, ...] = ()
    """Namespaces watched, comma-separated; empty watches the whole cluster."""
    default_image: Annotated[str, StringConstraints(min_length=1)] = DEFAULT_IMAGE
    """Workload image used when a resource sets none."""
    metrics_port: int = Field(default=8080, ge=1, le=65535)
    """Port of the operator's own Prometheus metrics (0 is not allowed: the Deployment scrapes it)."""
    health_port: int = Field(default=8081, ge=1, le=65535)
    """Port of Kopf's liveness endpoint (`/healthz`)."""
    workload_metrics_port: int = Field(default=TRAIN_METRICS_PORT, ge=1, le=65535)
    """Port on which training pods serve their metrics."""
    reconcile_period_seconds: float = Field(default=30.0, gt=0, le=3600)
    """How often every resource is re-checked, besides reacting to watch events."""
    retry_base_seconds: float = Field(default=1.0, gt=0, le=3600)
    """Delay before the first retry of a failed reconcile; doubles with each consecutive failure of that resource
    (client-go's ItemExponentialFailureRateLimiter, with up to 10% jitter below), reset by a success."""
    retry_max_seconds: float = Field(default=300.0, gt=0, le=86400)
    """The longest delay between two retries of one resource (the backoff's cap)."""
    progress_period_seconds: float = Field(default=15.0, gt=0, le=3600)
    """How often a training pod's metrics are read into status.progress."""
    scrape_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    autoscaler_period_seconds: float = Field(default=15.0, gt=0, le=3600)
    """How often each autoscaled YoloInferenceService's metric is read and its replicas decided (the HPA's
    --horizontal-pod-autoscaler-sync-period)."""
    handler_threads: int = Field(default=20, ge=1, le=256)
    """Workers of the reconcile queue (`runtime.workqueue`), also Kopf's thread pool size. Reads come from the
    watch-fed cache, so a reconcile waits only on its writes; several run at once, never two for one resource."""
    claim_grace_seconds: float = Field(default=30.0, ge=0, le=86400)
    """How long a missing PersistentVolumeClaim is waited for before the job fails."""
    persistence_prefix: Annotated[str, StringConstraints(pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z]+$")] = (
        PERSISTENCE_PREFIX
    )
    """Prefix of Kopf's annotations (progress, diff-base) and finalizer: `yolo-operator.io/...`."""
    watch_server_timeout_seconds: int = Field(default=300, ge=1, le=3600)
    """Server-side timeout of Kopf's watch requests (reconnects after it)."""
    watch_client_timeout_seconds: float = Field(default=330.0, ge=1, le=3600)
    """Client-side timeout of a watch request; longer than the server's."""
    watch_connect_timeout_seconds: float = Field(default=10.0, ge=1, le=300)
    posting_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    """Lowest level of Kopf's own log messages that are also posted as Events on the resource."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    peering: bool = False
    """Use Kopf peering (needs the kopf.dev CRDs) so that only one replica acts; off runs standalone."""
    field_manager: Annotated[str, StringConstraints(min_length=1, max_length=128)] = "yolo-operator"

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces


def load_settings(environ: Mapping[str, str] | None = None) -> OperatorSettings:
    """Read `YOLO_OPERATOR_*` variables; raise SettingsError naming each bad or unknown variable."""
    env = os.environ if environ is None else environ
    values: dict[str, str] = {}
    unknown: list[str] = []
    fields = OperatorSettings.model_fields
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == CACHE_ENV or is_service_link(name, value):
            continue
        key = name.removeprefix(ENV_PREFIX).lower()
        if key in fields:
            values[key] = value
        else:
            unknown.append(name)
    problems = [f"{name}: unknown setting (known: {', '.join(_env_names())})" for name in sorted(unknown)]
    try:
        settings = OperatorSettings.model_validate(values)
    except ValidationError as exc:
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            shown = values.get(field, "")
            problems.append(f"{ENV_PREFIX}{field.upper()}={shown!r}: {err['msg']}")
        settings = None
    if settings is not None and settings.watch_client_timeout_seconds <= settings.watch_server_timeout_seconds:
        problems.append(
            f"{ENV_PREFIX}WATCH_CLIENT_TIMEOUT_SECONDS: must exceed WATCH_SERVER_TIMEOUT_SECONDS "
            f"({settings.watch_server_timeout_seconds}), or watches are cut before the server ends them"
        )
    if settings is not None and settings.metrics_port == settings.health_port:
        problems.append(f"{ENV_PREFIX}METRICS_PORT and {ENV_PREFIX}HEALTH_PORT must differ")
    if problems or settings is None:
        raise SettingsError("invalid operator settings:\n  " + "\n  ".join(problems))
    return settings


def _env_names() -> list[str]:
    return [ENV_PREFIX + name.upper() for name in OperatorSettings.model_fields]
