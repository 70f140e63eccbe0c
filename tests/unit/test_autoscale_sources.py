"""The autoscaler's metric sources against real HTTP servers on loopback: pod /metrics and the Prometheus API."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from yolo_operator.autoscale import MetricsUnavailable
from yolo_operator.metrics.prometheus import PrometheusHttpSource, parse_response, substitute
from yolo_operator.metrics.scrape import (
    GPU_UTILIZATION_METRIC,
    QUEUE_DEPTH_METRIC,
    HttpPodScraper,
    PodEndpoint,
    endpoint_of,
    parse_metric,
)

pytestmark = pytest.mark.unit

POD_TEXT = {
    "a": f"# TYPE {GPU_UTILIZATION_METRIC} gauge\n{GPU_UTILIZATION_METRIC} 80\n{QUEUE_DEPTH_METRIC} 3\n",
    "b": f'{GPU_UTILIZATION_METRIC}{{gpu="0"}} 40\n{GPU_UTILIZATION_METRIC}{{gpu="1"}} 60\n',
    "c": "# no metrics here\nsomething_else 1\n",
}
PROM_ANSWERS: dict[str, Any] = {
    "one": {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "42.5"]}]}},
    "none": {"status": "success", "data": {"resultType": "vector", "result": []}},
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path.startswith("/pods/"):
            name = url.path.split("/")[2]
            body, ctype = POD_TEXT.get(name), "text/plain"
            status = 200 if body is not None else 404
        elif url.path == "/api/v1/query":
            query = parse_qs(url.query)["query"][0]
            answer = PROM_ANSWERS.get(query, {"status": "error", "error": f"parse error in {query}"})
            body, ctype, status = json.dumps(answer), "application/json", 200 if query in PROM_ANSWERS else 400
        else:
            body, ctype, status = "", "text/plain", 404
        data = (body or "").encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_parse_metric_means_over_gpus_and_ignores_other_names() -> None:
    assert parse_metric(POD_TEXT["a"], GPU_UTILIZATION_METRIC) == 80
    assert parse_metric(POD_TEXT["b"], GPU_UTILIZATION_METRIC) == 50
    assert parse_metric(POD_TEXT["c"], GPU_UTILIZATION_METRIC) is None


def test_scraper_reads_each_pod_and_marks_unreadable_ones_missing(server: str) -> None:
    scraper = HttpPodScraper(url_for=lambda p: f"{server}/pods/{p.name}/metrics" if p.ip else None)
    pods = [PodEndpoint(n, "ready", "10.0.0.1", 8080) for n in ("a", "b", "c", "gone404")]
    pods.append(PodEndpoint("noip", "ready", None, 8080))
    values = asyncio.run(scraper.pod_values(GPU_UTILIZATION_METRIC, pods))
    assert values == {"a": 80, "b": 50, "c": None, "gone404": None, "noip": None}


def test_scraper_unreachable_pod_is_missing_not_an_error() -> None:
    scraper = HttpPodScraper(timeout_s=1, url_for=lambda p: "http://127.0.0.1:1/metrics")
    values = asyncio.run(scraper.pod_values(QUEUE_DEPTH_METRIC, [PodEndpoint("a", "ready", "x", 1)]))
    assert values == {"a": None}


def test_prometheus_source_returns_the_single_value(server: str) -> None:
    assert asyncio.run(PrometheusHttpSource().query(server, "one")) == 42.5


@pytest.mark.parametrize(("query", "reason"), [("none", "EmptyQueryResult"), ("bad(", "PrometheusQueryFailed")])
def test_prometheus_source_failures_have_reasons(server: str, query: str, reason: str) -> None:
    with pytest.raises(MetricsUnavailable) as err:
        asyncio.run(PrometheusHttpSource().query(server, query))
    assert err.value.reason == reason


def test_unreachable_prometheus() -> None:
    with pytest.raises(MetricsUnavailable) as err:
        asyncio.run(PrometheusHttpSource(timeout_s=1).query("http://127.0.0.1:1", "up"))
    assert err.value.reason == "PrometheusUnreachable"


def test_parse_response_shapes() -> None:
    assert parse_response({"status": "success", "data": {"resultType": "scalar", "result": [1, "7"]}}) == 7
    two = {"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, "1"]}] * 2}}
    with pytest.raises(MetricsUnavailable, match="avg"):
        parse_response(two)
    with pytest.raises(MetricsUnavailable):
        parse_response({"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, "NaN"]}]}})


def test_substitute() -> None:
    assert (
        substitute('avg(x{namespace="$namespace",svc="$service"})', "ml", "det") == 'avg(x{namespace="ml",svc="det"})'
    )


@pytest.mark.workloads
def test_metric_names_equal_the_serving_workloads() -> None:
    serve_metrics = pytest.importorskip("yolo_workloads.serve.metrics")
    assert serve_metrics.GPU_UTILIZATION_PERCENT == GPU_UTILIZATION_METRIC
    assert serve_metrics.QUEUE_DEPTH == QUEUE_DEPTH_METRIC


def test_autoscaler_metrics_are_served_under_their_constant_names() -> None:
    from prometheus_client import generate_latest
    from yolo_operator.metrics import autoscaler_metrics as am
    from yolo_operator.metrics.operator_metrics import REGISTRY

    labels = {"namespace": "ns-x", "name": "svc-x"}
    am.desired_replicas.labels("ns-x", "svc-x").set(3)
    am.scale_events.labels("ns-x", "svc-x", "up").inc()
    assert REGISTRY.get_sample_value(am.DESIRED_REPLICAS, labels) == 3
    assert REGISTRY.get_sample_value(am.SCALE_EVENTS_TOTAL, {**labels, "direction": "up"}) == 1
    assert am.DESIRED_REPLICAS in generate_latest(REGISTRY).decode()
    am.forget("ns-x", "svc-x")
    assert REGISTRY.get_sample_value(am.DESIRED_REPLICAS, labels) is None


def test_pods_are_classified_as_the_hpa_does() -> None:
    ready_cond = {"conditions": [{"type": "Ready", "status": "True"}]}
    running = {"metadata": {"name": "a"}, "status": {"phase": "Running", "podIP": "10.0.0.9", **ready_cond}}
    assert endpoint_of(running, 8080) == PodEndpoint("a", "ready", "10.0.0.9", 8080)
    not_ready = {"metadata": {"name": "b"}, "status": {"phase": "Running", "conditions": []}}
    assert endpoint_of(not_ready, 8080).state == "unready"
    assert endpoint_of({"metadata": {"name": "c"}, "status": {"phase": "Pending"}}, 1).state == "unready"
    deleting = {"metadata": {"name": "d", "deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": running["status"]}
    assert endpoint_of(deleting, 1).state == "gone"
    assert endpoint_of({"metadata": {"name": "e"}, "status": {"phase": "Failed"}}, 1).state == "gone"
