"""The pure rules of `yolo-workload fetch`: what a URI names, which archive paths escape, how HTTP answers become
causes (and whether retrying can help), and what a SigV4 signature covers. The real servers are in
tests/workloads/test_fetch.py; these pin the decisions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from yolo_workloads.contract import source_kind
from yolo_workloads.fetch.remote import http_error
from yolo_workloads.fetch.sigv4 import Credentials, sign
from yolo_workloads.fetch.store import escapes

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("uri", "kind"),
    [
        ("s3://b/data.zip", "archive"),
        ("s3://b/data.TAR.GZ", "archive"),
        ("https://h/x.tgz?sig=1", "archive"),
        ("s3://b/prefix/", "tree"),
        ("https://h/yolo11n.pt", "file"),
        ("file:///claims/d/a.tar", "archive"),
    ],
)
def test_source_kind(uri: str, kind: str) -> None:
    assert source_kind(uri) == kind


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "C:\\\\x", "a\\\\..\\\\..\\\\x", "", "/"])
def test_escaping_entries(name: str) -> None:
    assert escapes(name)


@pytest.mark.parametrize("name", ["data.yaml", "a/b/c.jpg", "a..b/c", ".hidden/x", "shapes/"])
def test_entries_that_stay_inside(name: str) -> None:
    assert not escapes(name)


S3_403 = b"<?xml version='1.0'?><Error><Code>AccessDenied</Code><Message>Access Denied.</Message></Error>"


@pytest.mark.parametrize(
    ("status", "body", "s3", "cause", "permanent"),
    [
        (403, S3_403, True, "access denied (HTTP 403: AccessDenied: Access Denied.)", True),
        (404, b"", True, "no such key (HTTP 404)", True),
        (404, b"", False, "not found (HTTP 404)", True),
        (404, b"<Error><Code>NoSuchBucket</Code></Error>", True, "no such bucket (HTTP 404: NoSuchBucket)", True),
        (503, b"", False, "HTTP 503", False),
        (429, b"", False, "HTTP 429", False),
    ],
)
def test_http_answers_become_causes(status: int, body: bytes, s3: bool, cause: str, permanent: bool) -> None:
    error = http_error(status, body, s3=s3)
    assert (error.cause, error.permanent) == (cause, permanent)


def test_signature_covers_the_session_token_and_changes_with_the_secret() -> None:
    now = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    args = ("GET", "minio:9000", "/b/k.pt", {}, Credentials("AK", "SK", "TOKEN"), "us-east-1", now)
    headers = sign(*args)
    assert headers["x-amz-security-token"] == "TOKEN" and "x-amz-security-token" in headers["authorization"]
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AK/20261202/us-east-1/s3/aws4_request")
    assert sign(*args) == headers  # deterministic for one instant
    other = sign("GET", "minio:9000", "/b/k.pt", {}, Credentials("AK", "other", "TOKEN"), "us-east-1", now)
    assert other["authorization"] != headers["authorization"]
