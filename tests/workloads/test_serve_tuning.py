"""Serving tuning at start: the sweep runs before ready and its choice is what the model metadata reports."""

from __future__ import annotations

from pathlib import Path

import pytest
from serve_fixtures import serve

pytestmark = pytest.mark.workloads


def test_tuning_choice_is_in_model_metadata(tmp_path: Path, netblock: tuple[dict[str, str], Path]) -> None:
    from yolo_workloads.serve.synthetic import make_signal_weights
    from yolo_workloads.serve.tuning import candidates

    weights = make_signal_weights(str(tmp_path / "w.pt"), seed=4)
    tuning = {"enabled": True, "latency_slo_ms": 10_000, "trial_seconds": 0.3}
    with (
        serve(
            tmp_path, weights, netblock[0], imgsz=64, max_batch_size=8, max_queue_delay_ms=2, tuning=tuning
        ) as server,
        server.client() as c,
    ):
        params = c.get("/v2/models/yolo").json()["parameters"]
    grid = candidates(8, 2)
    trials = params["tuning"]["trials"]
    assert [(t["max_batch_size"], t["max_queue_delay_ms"]) for t in trials] == grid
    chosen = params["tuning"]["chosen"]
    # Every trial meets a 10 s SLO, so the winner is the highest throughput, and it is what the server uses.
    assert chosen["images_per_second"] == max(t["images_per_second"] for t in trials)
    assert (params["max_batch_size"], params["max_queue_delay_ms"]) == (
        chosen["max_batch_size"],
        chosen["max_queue_delay_ms"],
    )
    assert params["tuned"] is True
    assert netblock[1].read_text() == "", "the server tried to reach the network"


def test_candidates_cover_the_configured_point() -> None:
    from yolo_workloads.serve.tuning import candidates

    grid = candidates(32, 5)
    assert (32, 5) in grid and (8, 2.5) in grid and (16, 10) in grid and len(grid) == 9
    assert candidates(1, 0) == [(1, 0.5), (1, 1.0), (1, 2.0)]
