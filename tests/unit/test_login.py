"""Kopf's credentials come from the same client configuration the operator uses, in-cluster included.

The in-cluster loader of the kubernetes client stores `bearer <token>`; Kopf adds `Bearer ` itself, so anything
but the bare token is a 401 against a real API server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client as k8s_client
from kubernetes.config.incluster_config import InClusterConfigLoader
from yolo_operator.k8s.client import Kube
from yolo_operator.main import bearer_token, connection_info

pytestmark = pytest.mark.unit


def test_in_cluster_service_account_token_reaches_kopf_bare(tmp_path: Path) -> None:
    token_file, ca_file = tmp_path / "token", tmp_path / "ca.crt"
    token_file.write_text("eyJhbGciOiJSUzI1NiJ9.payload.sig")
    ca_file.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    configuration = k8s_client.Configuration()
    loader = InClusterConfigLoader(
        token_filename=str(token_file),
        cert_filename=str(ca_file),
        environ={"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"},
    )
    loader.load_and_set(configuration)
    info = connection_info(Kube(k8s_client.ApiClient(configuration), "test"))
    assert info.token == "eyJhbGciOiJSUzI1NiJ9.payload.sig"
    assert info.server == "https://10.0.0.1:443"
    # The kubelet rotates the projected token: a later login reads the new one.
    token_file.write_text("rotated.token.sig")
    loader.token_expires_at = loader.token_expires_at.min  # due for a re-read
    assert connection_info(Kube(k8s_client.ApiClient(configuration), "test")).token == "rotated.token.sig"


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc", "abc"), ("bearer abc", "abc"), ("BEARER  abc ", "abc"), ("abc", "abc")],
)
def test_bearer_token_strips_the_scheme_in_any_case(header: str, token: str) -> None:
    assert bearer_token(header) == token
