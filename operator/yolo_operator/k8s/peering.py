"""Kopf's peering object, created by the operator itself when it starts.

Kopf peering needs a ClusterKopfPeering (or a KopfPeering per watched namespace) to exist before replicas can see
each other. Shipping that object in the install races its own CRD (`kubectl apply -k` fails the first time with
"no matches for kind"); creating it here, once the CRD is served, makes the install one pass and covers the
namespaced mode too (one KopfPeering per namespace in YOLO_OPERATOR_NAMESPACES), with nothing for users to create.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from yolo_operator.k8s.client import ApiError, Kube

log = logging.getLogger(__name__)

API_VERSION = "kopf.dev/v1"


def peering_objects(name: str, namespaces: tuple[str, ...]) -> list[dict[str, Any]]:
    """The peering objects an operator watching `namespaces` (empty: the whole cluster) peers through."""
    labels = {"app.kubernetes.io/name": "yolo-operator", "app.kubernetes.io/managed-by": "yolo-operator"}
    if not namespaces:
        return [{"apiVersion": API_VERSION, "kind": "ClusterKopfPeering", "metadata": {"name": name, "labels": labels}}]
    return [
        {
            "apiVersion": API_VERSION,
            "kind": "KopfPeering",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
        }
        for ns in namespaces
    ]


def ensure_peering(
    kube: Kube,
    name: str,
    namespaces: tuple[str, ...],
    timeout_s: float = 120,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Create the missing peering objects. A 404 means the CRD is not served yet (installed moments ago): retry
    with exponential backoff up to `timeout_s`, then raise naming the CRD."""
    for obj in peering_objects(name, namespaces):
        delay, waited = 0.5, 0.0
        while True:
            try:
                _, created = kube.create(obj)
            except ApiError as exc:
                if not exc.not_found or waited >= timeout_s:
                    raise RuntimeError(
                        f"cannot create {obj['kind']} {name!r} for Kopf peering ({exc}); is the CRD "
                        f"{obj['kind'].lower()}s.kopf.dev installed (manifests/base/kopf-peering.yaml)?"
                    ) from exc
                sleep(delay)
                waited += delay
                delay = min(delay * 2, 10.0)
                continue
            if created:
                log.info("created %s %s for Kopf peering", obj["kind"], name)
            break
