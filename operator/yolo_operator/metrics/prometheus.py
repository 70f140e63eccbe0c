"""Source `prometheus`: one PromQL instant query through the HTTP API (`/api/v1/query`) giving the metric's mean
over the service's replicas, e.g. `avg(DCGM_FI_DEV_GPU_UTIL{namespace="$namespace", pod=~"$service-.*"})`.

Why: clusters that already run DCGM exporter and Prometheus can autoscale on those numbers without the serving
pods being reachable from the operator. Every failure is a `MetricsUnavailable` with a reason for the
ScalingActive condition, so an unreachable Prometheus keeps the replicas rather than scaling them.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import aiohttp

from yolo_operator.autoscale.replicas import MetricsUnavailable


class ServiceMetricSource(Protocol):
    """Runs a query that returns one number."""

    async def query(self, base_url: str, promql: str) -> float: ...


def substitute(query: str, namespace: str, service: str) -> str:
    """`$namespace` and `$service` in the spec's query."""
    return query.replace("$namespace", namespace).replace("$service", service)


def parse_response(body: Any) -> float:
    """The single number of a Prometheus API answer; MetricsUnavailable saying what was wrong otherwise."""
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else None
        raise MetricsUnavailable("PrometheusQueryFailed", f"Prometheus rejected the query: {error or body!r}")
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        raw = result[1] if isinstance(result, list) and len(result) == 2 else None
    elif kind == "vector" and isinstance(result, list):
        if not result:
            raise MetricsUnavailable("EmptyQueryResult", "the query returned no series (no data yet?)")
        if len(result) > 1:
            raise MetricsUnavailable(
                "AmbiguousQueryResult",
                f"the query returned {len(result)} series; aggregate it to one number, e.g. with avg(...)",
            )
        raw = (result[0].get("value") or [None, None])[1] if isinstance(result[0], dict) else None
    else:
        raise MetricsUnavailable("PrometheusQueryFailed", f"unsupported result type {kind!r}: use an instant query")
    try:
        value = float(str(raw))
    except (TypeError, ValueError):
        raise MetricsUnavailable("PrometheusQueryFailed", f"the query returned {raw!r}, not a number") from None
    if math.isnan(value) or math.isinf(value):
        raise MetricsUnavailable("InvalidMetricValue", f"the query returned {raw}")
    return value


class PrometheusHttpSource:
    """The Prometheus HTTP API client."""

    def __init__(self, timeout_s: float = 5.0) -> None:
        self.timeout_s = timeout_s

    async def query(self, base_url: str, promql: str) -> float:
        url = base_url.rstrip("/") + "/api/v1/query"
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, params={"query": promql}) as resp,
            ):
                if resp.status >= 500:
                    raise MetricsUnavailable("PrometheusQueryFailed", f"{url} answered HTTP {resp.status}")
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise MetricsUnavailable(
                "PrometheusUnreachable", f"cannot reach {url}: {exc or type(exc).__name__}"
            ) from None
        except ValueError:
            raise MetricsUnavailable("PrometheusQueryFailed", f"{url} did not answer JSON") from None
        return parse_response(body)
