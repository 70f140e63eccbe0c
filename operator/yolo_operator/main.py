"""Starting the operator: settings → Kopf settings, one registry with both controllers, login from a kubeconfig or
the pod's service account, metrics and liveness endpoints; `run` for the CLI, `OperatorThread` for tests.

Kopf is configured explicitly (nothing from Kopf's global default registry is used): its bookkeeping lives in
annotations and a finalizer under the `yolo-operator.io` prefix, never in status (the CRD's schema has no place
for it) and never in spec.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kopf

from yolo_operator import handlers
from yolo_operator.controllers.inference_service import InferenceController
from yolo_operator.controllers.train_job import TrainJobController
from yolo_operator.k8s.client import Kube
from yolo_operator.k8s.peering import ensure_peering
from yolo_operator.metrics import operator_metrics
from yolo_operator.runtime.manager import Runtime
from yolo_operator.settings import OperatorSettings

log = logging.getLogger(__name__)

# Named after the operator, not Kopf's `default`: another Kopf operator in the cluster must not share it (peers of
# equal priority freeze each other).
PEERING_NAME = "yolo-operator"


def kopf_settings(settings: OperatorSettings) -> kopf.OperatorSettings:
    ks = kopf.OperatorSettings()
    prefix = settings.persistence_prefix
    ks.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    ks.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=prefix, key="last-handled-configuration")
    ks.persistence.finalizer = f"{prefix}/finalizer"
    ks.watching.server_timeout = settings.watch_server_timeout_seconds
    ks.watching.client_timeout = settings.watch_client_timeout_seconds
    ks.watching.connect_timeout = settings.watch_connect_timeout_seconds
    ks.execution.max_workers = settings.handler_threads
    ks.posting.level = logging.getLevelName(settings.posting_level)
    ks.peering.standalone = not settings.peering
    ks.peering.name = PEERING_NAME
    ks.peering.clusterwide = settings.clusterwide
    return ks


def connection_info(kube: Kube) -> kopf.ConnectionInfo:
    """Kopf's credentials from the same configuration our client uses (kubeconfig or service account)."""
    cfg = kube.configuration
    if cfg.refresh_api_key_hook is not None:
        cfg.refresh_api_key_hook(cfg)  # a pod's projected token is rotated by the kubelet: read the current one
    auth = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
    token = bearer_token(auth) if auth else None
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert or None,
        insecure=not cfg.verify_ssl,
        token=token,
        certificate_path=cfg.cert_file or None,
        private_key_path=cfg.key_file or None,
        username=cfg.username or None,
        password=cfg.password or None,
    )


def bearer_token(header: str) -> str:
    """The token of an Authorization header value, whatever the scheme's case.

    The kubernetes client's in-cluster loader stores `bearer <token>` (lower case), kubeconfigs give `Bearer
    <token>`, and Kopf adds its own `Bearer ` prefix: sending `Bearer bearer ...` is a 401.
    """
    scheme, _, rest = header.strip().partition(" ")
    return rest.strip() if scheme.lower() == "bearer" and rest.strip() else header.strip()


@dataclass
class Controllers:
    train_job: TrainJobController
    inference_service: InferenceController


def build_registry(
    kube: Kube, settings: OperatorSettings, customize: Callable[[Controllers], None] | None = None
) -> tuple[kopf.OperatorRegistry, Controllers]:
    registry = kopf.OperatorRegistry()
    runtime = Runtime(kube, settings)  # the controllers read its cache
    controllers = Controllers(
        TrainJobController(kube, settings, runtime.cache), InferenceController(kube, settings, runtime.cache)
    )
    if customize:
        customize(controllers)  # tests swap the metrics sources here

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(kube)

    handlers.register(registry, runtime, controllers.train_job, controllers.inference_service)
    return registry, controllers


async def run_async(
    settings: OperatorSettings,
    kubeconfig: str | None = None,
    stop_flag: threading.Event | None = None,
    ready_flag: threading.Event | None = None,
    serve_metrics: bool = True,
    liveness: bool = True,
    customize: Callable[[Controllers], None] | None = None,
) -> None:
    # Each reconcile worker and each watch holds a connection; a few more for the resync and autoscaler threads.
    kube = Kube.connect(kubeconfig, settings.field_manager, connections=settings.handler_threads + 16)
    registry, _ = build_registry(kube, settings, customize)
    if settings.peering:
        await asyncio.to_thread(ensure_peering, kube, PEERING_NAME, settings.namespaces)
    server = operator_metrics.serve(settings.metrics_port) if serve_metrics else None
    try:
        await kopf.operator(
            registry=registry,
            settings=kopf_settings(settings),
            standalone=not settings.peering,
            clusterwide=settings.clusterwide,
            namespaces=list(settings.namespaces),
            liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz" if liveness else None,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    finally:
        if server is not None:
            server.shutdown()  # type: ignore[attr-defined]
        kube.close()


class RetriedRequestsAreWarnings(logging.Filter):
    """Kopf logs a request it is about to retry ("Request attempt 1/9 failed; will retry", e.g. a 429 while a new
    CRD's storage initialises) at ERROR; only the last, escalated attempt is an error. The rest become WARNING, so
    an error-level alert means something failed for good."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and "failed; will retry" in str(record.msg):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def run(settings: OperatorSettings, kubeconfig: str | None = None) -> int:
    """Run until SIGTERM/SIGINT (Kopf handles them in the main thread)."""
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RetriedRequestsAreWarnings())
    if settings.log_level == "INFO":
        # Kopf logs every handler run at INFO ("Handler ... succeeded"): ~10 % of the event loop at scale. Its
        # warnings and errors still show; YOLO_OPERATOR_LOG_LEVEL=DEBUG brings everything back.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        # The liveness endpoint's access log: a line per kubelet probe (every 10-20 s) drowns everything else.
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    asyncio.run(run_async(settings, kubeconfig))
    return 0


class OperatorThread:
    """The operator in a background thread with its own event loop: start, wait until ready, stop."""

    def __init__(
        self,
        settings: OperatorSettings,
        kubeconfig: str | None,
        serve_metrics: bool = False,
        liveness: bool = False,
        customize: Callable[[Controllers], None] | None = None,
    ) -> None:
        self.settings = settings
        self.kubeconfig = kubeconfig
        self.stop_flag = threading.Event()
        self.ready_flag = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="yolo-operator", daemon=True)
        self._kwargs = {"serve_metrics": serve_metrics, "liveness": liveness, "customize": customize}

    def _main(self) -> None:
        try:
            asyncio.run(
                run_async(self.settings, self.kubeconfig, self.stop_flag, self.ready_flag, **self._kwargs)  # type: ignore[arg-type]
            )
        except BaseException as exc:
            self.error = exc
            log.exception("operator thread ended with an error")

    def start(self, timeout_s: float = 60) -> OperatorThread:
        self._thread.start()
        if not self.ready_flag.wait(timeout_s):
            self.stop()
            raise RuntimeError(f"the operator was not ready within {timeout_s} s (error: {self.error})")
        return self

    def stop(self, timeout_s: float = 30) -> None:
        self.stop_flag.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise RuntimeError(f"the operator thread did not stop within {timeout_s} s")

    def __enter__(self) -> OperatorThread:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
