"""A small, general client for the API server: server-side apply, get/list by labels, merge patch, status patch,
events. Both controllers use it; it is the only code that performs API calls.

Built on the `kubernetes` package's REST layer (connection, TLS, auth from a kubeconfig or the pod's service
account) but speaks plain dicts: what render/ produces goes in unchanged. Synchronous: Kopf runs our sync handlers
in its thread pool. Objects are addressed by (apiVersion, kind); `RESOURCES` maps the kinds the operator touches
to their REST paths (add a line to use another kind).
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

RESOURCES: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Pod"): ("pods", True),
    ("v1", "Service"): ("services", True),
    ("v1", "Event"): ("events", True),
    ("v1", "PersistentVolumeClaim"): ("persistentvolumeclaims", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "Node"): ("nodes", False),
    ("v1", "Namespace"): ("namespaces", False),
    ("kopf.dev/v1", "ClusterKopfPeering"): ("clusterkopfpeerings", False),
    ("kopf.dev/v1", "KopfPeering"): ("kopfpeerings", True),
    ("batch/v1", "Job"): ("jobs", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("policy/v1", "PodDisruptionBudget"): ("poddisruptionbudgets", True),
    ("yolo-operator.io/v1alpha1", "YoloTrainJob"): ("yolotrainjobs", True),
    ("yolo-operator.io/v1alpha1", "YoloInferenceService"): ("yoloinferenceservices", True),
}
REQUEST_TIMEOUT_S = 30.0


class ApiError(RuntimeError):
    """A failed API call: HTTP status, the server's reason and message."""

    def __init__(self, status: int, reason: str, message: str, what: str) -> None:
        super().__init__(f"{what}: HTTP {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


@dataclass(frozen=True)
class Ref:
    """Enough to address an object and to name it in an Event."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None
    uid: str | None = None

    @classmethod
    def of(cls, obj: dict[str, Any]) -> Ref:
        meta = obj.get("metadata", {})
        return cls(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"), meta.get("uid"))


def resource_path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    try:
        plural, namespaced = RESOURCES[(api_version, kind)]
    except KeyError:
        raise ValueError(f"{api_version} {kind}: not in k8s.client.RESOURCES") from None
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespaced and namespace:
        base += f"/namespaces/{quote(namespace)}"
    base += f"/{plural}"
    return f"{base}/{quote(name)}" if name else base


def label_selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


class Kube:
    """One connection to the API server; thread-safe (urllib3's pool), shared by all handlers."""

    def __init__(self, api_client: k8s_client.ApiClient, field_manager: str = "yolo-operator") -> None:
        self.api = api_client
        self.field_manager = field_manager

    @classmethod
    def connect(
        cls, kubeconfig: str | None = None, field_manager: str = "yolo-operator", connections: int = 32
    ) -> Kube:
        """From a kubeconfig file, or the pod's service account when `kubeconfig` is None and it exists.
        `connections`: kept-alive connections (urllib3's pool; its default of 10 is fewer than the reconcile
        workers plus the watches, and every connection beyond it is a new TLS handshake for both sides)."""
        configuration = k8s_client.Configuration()
        configuration.connection_pool_maxsize = connections
        if kubeconfig:
            k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            try:
                k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            except k8s_config.ConfigException:
                k8s_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return cls(k8s_client.ApiClient(configuration), field_manager)

    @property
    def configuration(self) -> k8s_client.Configuration:
        configuration: k8s_client.Configuration = self.api.configuration
        return configuration

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]

    # --- raw ------------------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        url = self.configuration.host + path + (f"?{urlencode(query)}" if query else "")
        headers = {"Accept": "application/json", "Content-Type": content_type}
        self.api.update_params_for_auth(headers, None, ["BearerToken"], path, method, body)
        what = f"{method} {path}"
        try:
            response = self.api.call_api(
                method,
                url,
                header_params=headers,
                body=body,  # the REST layer JSON-encodes it (also for the +json/+yaml patch types)
                _request_timeout=REQUEST_TIMEOUT_S,
            )
            response.read()  # type: ignore[no-untyped-call]
        except ApiException as exc:
            raise _api_error(exc.status or 0, exc.reason or "", exc.body, what) from None
        data = response.data.decode() if response.data else ""
        if not 200 <= response.status <= 299:
            raise _api_error(response.status, response.reason or "", data, what)
        return dict(json.loads(data)) if data else {}

    # --- typed helpers --------------------------------------------------------------------------------------

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            return self.request("GET", resource_path(api_version, kind, namespace, name))
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        labels: dict[str, str] | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        query: dict[str, str] = {}
        if labels:
            query["labelSelector"] = label_selector(labels)
        if field_selector:
            query["fieldSelector"] = field_selector
        items: list[dict[str, Any]] = self.request("GET", resource_path(api_version, kind, namespace), query=query)[
            "items"
        ]
        for item in items:  # list items carry no apiVersion/kind; put them back so Ref.of works
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    def apply(self, obj: dict[str, Any], force: bool = True) -> dict[str, Any]:
        """Server-side apply under our field manager; `force` takes over fields another manager set."""
        meta = obj["metadata"]
        path = resource_path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        query = {"fieldManager": self.field_manager, "force": "true" if force else "false"}
        return self.request("PATCH", path, obj, query, content_type="application/apply-patch+yaml")

    def ensure(self, obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create the object if it does not exist; leave an existing one alone (Jobs' templates are immutable).
        Returns (object, created)."""
        meta = obj["metadata"]
        existing = self.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
        if existing is not None:
            return existing, False
        return self.create(obj)

    def create(self, obj: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """POST the object; when it exists already (409), return the stored one. For callers that just saw it
        absent (one request instead of `ensure`'s two). Returns (object, created)."""
        meta = obj["metadata"]
        path = resource_path(obj["apiVersion"], obj["kind"], meta.get("namespace"))
        try:
            return self.request("POST", path, obj, {"fieldManager": self.field_manager}), True
        except ApiError as exc:
            if exc.conflict:  # created concurrently (another handler run): same name, same owner
                found = self.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
                if found is not None:
                    return found, False
            raise

    def merge_patch(self, ref: Ref, patch: dict[str, Any], subresource: str | None = None) -> dict[str, Any]:
        path = resource_path(ref.api_version, ref.kind, ref.namespace, ref.name)
        if subresource:
            path += f"/{subresource}"
        return self.request(
            "PATCH", path, patch, {"fieldManager": self.field_manager}, content_type="application/merge-patch+json"
        )

    def patch_status(self, ref: Ref, status: dict[str, Any]) -> dict[str, Any]:
        """One merge patch of the status subresource; keys set to None are removed."""
        return self.merge_patch(ref, {"status": status}, subresource="status")

    def delete(self, ref: Ref, propagation: str = "Background") -> bool:
        path = resource_path(ref.api_version, ref.kind, ref.namespace, ref.name)
        try:
            self.request("DELETE", path, {"propagationPolicy": propagation})
        except ApiError as exc:
            if exc.not_found:
                return False
            raise
        return True

    def post_event(self, about: Ref, type_: str, reason: str, message: str, component: str = "yolo-operator") -> None:
        """A core/v1 Event on `about`; failures are logged, never raised (events are best effort)."""
        namespace = about.namespace or "default"
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{about.name}.{uuid.uuid4().hex[:12]}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": about.api_version,
                "kind": about.kind,
                "name": about.name,
                "namespace": namespace,
                "uid": about.uid,
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.request("POST", resource_path("v1", "Event", namespace), event)
        except ApiError as exc:
            log.warning("could not post event %s on %s/%s: %s", reason, namespace, about.name, exc)


def _api_error(status: int, reason: str, body: Any, what: str) -> ApiError:
    message = body if isinstance(body, str) else ""
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        message = json.loads(body).get("message", message)
    return ApiError(status, reason, str(message)[:2000], what)
