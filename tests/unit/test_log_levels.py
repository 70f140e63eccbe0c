"""Kopf's retried requests are logged as warnings by the operator; a request that failed for good stays an error."""

from __future__ import annotations

import logging

import pytest
from yolo_operator.main import RetriedRequestsAreWarnings

pytestmark = pytest.mark.unit


def record(message: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("kopf._cogs.clients.watching", level, __file__, 1, message, None, None)


def test_a_retried_request_is_a_warning() -> None:
    r = record(
        "Request attempt #1/9 failed; will retry: GET .../yoloinferenceservices -> 429 storage is (re)initializing"
    )
    assert RetriedRequestsAreWarnings().filter(r)
    assert (r.levelno, r.levelname) == (logging.WARNING, "WARNING")


def test_the_last_attempt_and_other_errors_stay_errors() -> None:
    for message in ("Request attempt #9/9 failed; escalating: GET ... -> 429", "Handler 'x' failed with an exception"):
        r = record(message)
        assert RetriedRequestsAreWarnings().filter(r)
        assert r.levelno == logging.ERROR
