"""Operator settings from YOLO_OPERATOR_* variables: defaults, parsing, and errors that name the variable."""

from __future__ import annotations

import pytest
from yolo_operator.settings import SettingsError, load_settings

pytestmark = pytest.mark.unit


def test_defaults_watch_the_whole_cluster() -> None:
    s = load_settings({"PATH": "/bin"})
    assert s.clusterwide and s.namespaces == ()
    assert s.persistence_prefix == "yolo-operator.io"
    assert s.metrics_port != s.health_port


def test_values_are_parsed() -> None:
    s = load_settings(
        {
            "YOLO_OPERATOR_NAMESPACES": "team-a, team-b,",
            "YOLO_OPERATOR_DEFAULT_IMAGE": "registry.example/yolo:2",
            "YOLO_OPERATOR_RECONCILE_PERIOD_SECONDS": "2.5",
            "YOLO_OPERATOR_PEERING": "true",
            "YOLO_OPERATOR_POSTING_LEVEL": "INFO",
        }
    )
    assert s.namespaces == ("team-a", "team-b") and not s.clusterwide
    assert s.default_image == "registry.example/yolo:2"
    assert s.reconcile_period_seconds == 2.5
    assert s.peering is True
    assert s.posting_level == "INFO"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"YOLO_OPERATOR_METRICS_PORT": "http"}, "YOLO_OPERATOR_METRICS_PORT='http'"),
        ({"YOLO_OPERATOR_METRICS_PORT": "70000"}, "YOLO_OPERATOR_METRICS_PORT"),
        ({"YOLO_OPERATOR_POSTING_LEVEL": "LOUD"}, "YOLO_OPERATOR_POSTING_LEVEL"),
        ({"YOLO_OPERATOR_RECONCILE_PERIOD_SECONDS": "0"}, "YOLO_OPERATOR_RECONCILE_PERIOD_SECONDS"),
        ({"YOLO_OPERATOR_PERSISTENCE_PREFIX": "Not A Prefix"}, "YOLO_OPERATOR_PERSISTENCE_PREFIX"),
        ({"YOLO_OPERATOR_NAMESPACE": "typo"}, "YOLO_OPERATOR_NAMESPACE: unknown setting"),
        (
            {"YOLO_OPERATOR_WATCH_CLIENT_TIMEOUT_SECONDS": "10", "YOLO_OPERATOR_WATCH_SERVER_TIMEOUT_SECONDS": "60"},
            "must exceed",
        ),
        ({"YOLO_OPERATOR_METRICS_PORT": "9000", "YOLO_OPERATOR_HEALTH_PORT": "9000"}, "must differ"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match="invalid operator settings") as info:
        load_settings(env)
    assert named in str(info.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({"YOLO_OPERATOR_METRICS_PORT": "x", "YOLO_OPERATOR_HEALTH_PORT": "y"})
    assert "METRICS_PORT" in str(info.value) and "HEALTH_PORT" in str(info.value)


def test_kopf_keeps_its_bookkeeping_under_our_prefix() -> None:
    import kopf
    from yolo_operator.main import kopf_settings

    ks = kopf_settings(
        load_settings({"YOLO_OPERATOR_WATCH_SERVER_TIMEOUT_SECONDS": "120", "YOLO_OPERATOR_POSTING_LEVEL": "ERROR"})
    )
    assert isinstance(ks.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert ks.persistence.progress_storage.prefix == "yolo-operator.io"
    assert isinstance(ks.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)
    assert ks.persistence.finalizer == "yolo-operator.io/finalizer"
    assert ks.watching.server_timeout == 120
    assert ks.posting.level == 40
    assert ks.peering.standalone is True


def test_service_link_variables_of_a_real_pod_are_not_settings() -> None:
    """What the kubelet injects for the install's Service `yolo-operator-metrics` (and any `yolo-operator-*`
    Service in the namespace) must neither stop the operator nor be read as a setting."""
    injected = {
        "YOLO_OPERATOR_METRICS_SERVICE_HOST": "10.0.0.7",
        "YOLO_OPERATOR_METRICS_SERVICE_PORT": "8080",
        "YOLO_OPERATOR_METRICS_SERVICE_PORT_METRICS": "8080",
        "YOLO_OPERATOR_METRICS_PORT": "tcp://10.0.0.7:8080",
        "YOLO_OPERATOR_METRICS_PORT_8080_TCP": "tcp://10.0.0.7:8080",
        "YOLO_OPERATOR_METRICS_PORT_8080_TCP_PROTO": "tcp",
        "YOLO_OPERATOR_METRICS_PORT_8080_TCP_PORT": "8080",
        "YOLO_OPERATOR_METRICS_PORT_8080_TCP_ADDR": "10.0.0.7",
        "YOLO_OPERATOR_WEBHOOK_PORT": "udp://10.0.0.9:53",
    }
    s = load_settings({**injected, "YOLO_OPERATOR_HEALTH_PORT": "8081"})
    assert s.metrics_port == 8080  # the default, not the Service's tcp://... address
    # A real setting beside them is still read, and a real typo still refused.
    assert load_settings({**injected, "YOLO_OPERATOR_METRICS_PORT": "9100"}).metrics_port == 9100
    with pytest.raises(SettingsError, match="YOLO_OPERATOR_RECONCILE_PERIOD"):
        load_settings({**injected, "YOLO_OPERATOR_RECONCILE_PERIOD": "5"})


def test_the_projects_cache_folder_is_not_refused_as_a_setting() -> None:
    """YOLO_OPERATOR_CACHE (set-up's and `yolo-operator run`'s cache) shares the prefix: the controller starts."""
    settings = load_settings({"YOLO_OPERATOR_CACHE": "/tmp/cache", "YOLO_OPERATOR_LOG_LEVEL": "DEBUG"})
    assert settings.log_level == "DEBUG"
    with pytest.raises(SettingsError, match="YOLO_OPERATOR_CACHES: unknown setting"):
        load_settings({"YOLO_OPERATOR_CACHES": "/tmp/cache"})
