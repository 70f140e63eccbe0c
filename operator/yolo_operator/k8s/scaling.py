"""API calls the inference controller and its autoscaler need beyond the general client: the service's pods,
setting a Deployment's replicas, removing a child that is no longer wanted.

Kept apart from client.py (owned by the train controller) so both can change independently.
"""

from __future__ import annotations

from typing import Any

from yolo_operator.k8s.client import ApiError, Kube, Ref


def list_pods(kube: Kube, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
    return kube.list("v1", "Pod", namespace, labels=labels)


def set_replicas(kube: Kube, namespace: str, deployment: str, replicas: int) -> dict[str, Any]:
    """A merge patch of spec.replicas alone (the rest of the Deployment stays as the last apply left it)."""
    return kube.merge_patch(Ref("apps/v1", "Deployment", deployment, namespace), {"spec": {"replicas": replicas}})


def delete_if_present(kube: Kube, api_version: str, kind: str, namespace: str, name: str) -> bool:
    """Delete a child; True when something was deleted, False when it was already gone."""
    try:
        return kube.delete(Ref(api_version, kind, name, namespace))
    except ApiError as exc:
        if exc.not_found:
            return False
        raise
