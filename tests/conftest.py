"""Shared test configuration: every test carries exactly one suite marker, so no suite runs or skips silently."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# CI explores the same examples on every run (a property that fails there fails again on the same input, and a
# landing never depends on luck); elsewhere hypothesis draws fresh examples and finds new edge cases.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")

SUITES = ("unit", "cluster", "e2e", "workloads", "gpu")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = [item.nodeid for item in items if not any(item.get_closest_marker(s) for s in SUITES)]
    if unmarked:
        raise pytest.UsageError(f"tests without a suite marker ({', '.join(SUITES)}): {unmarked[:5]}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say per suite how many tests ran and were skipped, so a skipped suite is visible in CI's log."""
    counts: dict[str, dict[str, int]] = {s: {"passed": 0, "failed": 0, "skipped": 0} for s in SUITES}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            keywords = getattr(report, "keywords", {})
            for suite in SUITES:
                if suite in keywords and report.when in ("call", "setup"):
                    key = "failed" if outcome == "error" else outcome
                    if outcome == "skipped" or report.when == "call" or outcome == "error":
                        counts[suite][key] += 1
    terminalreporter.section("suites")
    for suite, c in counts.items():
        terminalreporter.write_line(
            f"{suite:10s} passed {c['passed']:4d}  failed {c['failed']:4d}  skipped {c['skipped']:4d}"
        )


@pytest.fixture
def static_lists_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loss's lists sized on the host (train/static_lists.py) for every batch, whatever the module's defaults:
    tests of the lists hold when the default is switched off, and on batches of few labels."""
    from yolo_workloads.train import static_lists

    monkeypatch.setattr(static_lists, "ENABLED", True)
    monkeypatch.setattr(static_lists, "MIN_LABELS", 0)  # every batch, however few its labels
