"""What both controllers share while the operator runs: the watch-fed cache they read and the work queue their
reconciles run from, started before Kopf handles the first watch event and stopped at cleanup (`handlers.runtime`
registers those hooks; this module imports no Kopf).

The controller-runtime shape (issue 10): Kopf's watch handlers for the custom resources, and the cache's hooks for
children, only record the latest body and add a key (`enqueue`); `handler_threads` workers run the reconciles.
A route names what a key means ("train": reconcile a YoloTrainJob, "serve": a YoloInferenceService...) and the
kind of resource it reconciles: all routes of one resource share its backoff and its one retry chain (issue 17), and
each retry is counted in `yolo_operator_reconcile_retries_total{kind, cause}`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from yolo_operator.k8s.client import ApiError, Kube
from yolo_operator.lifecycle.stalled import cause_of_status
from yolo_operator.metrics import operator_metrics as m
from yolo_operator.runtime.cache import ClusterCache
from yolo_operator.runtime.workqueue import ItemBackoff, WorkQueue
from yolo_operator.settings import OperatorSettings

log = logging.getLogger(__name__)

Key = tuple[str, str, str]
"""(route, namespace, name)."""


class Runtime:
    def __init__(self, kube: Kube, settings: OperatorSettings) -> None:
        self.cache = ClusterCache(kube, settings.namespaces, settings.watch_server_timeout_seconds)
        cap = settings.retry_max_seconds
        self.queue: WorkQueue[Key] = WorkQueue(
            "reconcile",
            self._dispatch,
            settings.handler_threads,
            ItemBackoff(min(settings.retry_base_seconds, cap), cap),
            chain=self._resource,
            cause=cause_of,
            on_retry=self._count_retry,
        )
        self._routes: dict[str, Callable[[str, str], object]] = {}
        self._kinds: dict[str, str] = {}
        self.sync_timeout_s = settings.watch_connect_timeout_seconds * 6

    def route(self, name: str, fn: Callable[[str, str], object], kind: str | None = None) -> None:
        """`kind`: the resource kind the route reconciles (default: the route's name)."""
        self._routes[name] = fn
        self._kinds[name] = kind or name

    def enqueue(self, route: str, namespace: str, name: str) -> None:
        """Run now (a watch event: something changed)."""
        self.queue.add((route, namespace, name))

    def enqueue_periodic(self, route: str, namespace: str, name: str) -> None:
        """Run now unless the resource is waiting for its retry (the periodic resync: nothing is known to have
        changed, and a second retry chain is what made failing resources' attempt rate grow)."""
        self.queue.add_periodic((route, namespace, name))

    def _resource(self, key: Key) -> Key:
        route, namespace, name = key
        return (self._kinds.get(route, route), namespace, name)

    def _count_retry(self, key: Key, cause: str) -> None:
        m.reconcile_retries.labels(self._resource(key)[0], cause).inc()

    def _dispatch(self, key: Key) -> None:
        route, namespace, name = key
        self._routes[route](namespace, name)

    def start(self) -> None:
        self.cache.start(self.sync_timeout_s)
        self.queue.start()
        log.info("cache filled (%d nodes, %d jobs, %d pods); %d reconcile workers", *self.sizes(), self.queue.workers)

    def stop(self) -> None:
        self.queue.stop()
        self.cache.stop()

    def sizes(self) -> tuple[int, int, int]:
        c = self.cache
        return len(c.nodes), sum(map(len, c.jobs)), sum(map(len, c.pods))


def cause_of(exc: BaseException) -> str:
    """The retry metric's `cause` label: the API server's refusal (Invalid, Forbidden, Conflict, ServerError, ...),
    Unreachable for a connection that failed, else the exception's type name."""
    if isinstance(exc, ApiError):
        return cause_of_status(exc.status)
    if isinstance(exc, OSError):
        return "Unreachable"
    return type(exc).__name__
