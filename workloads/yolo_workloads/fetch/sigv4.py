"""AWS Signature Version 4 for S3 requests, written over the standard library.

S3-compatible servers (AWS, MinIO, Ceph, GCS's interoperability mode) authenticate requests with SigV4. The
project's lock already has an HTTP client (urllib3) but no AWS SDK, and a whole SDK is a heavy dependency for
three requests (HEAD, GET, ListObjectsV2), so the signature is computed here. Pure: the clock is an argument.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    session_token: str | None = None


def uri_encode(text: str, keep_slash: bool) -> str:
    """RFC 3986 encoding as SigV4 wants it: everything but unreserved characters, `/` kept in paths only."""
    return quote(text, safe="/-_.~" if keep_slash else "-_.~")


def canonical_query(params: dict[str, str]) -> str:
    pairs = sorted((uri_encode(k, False), uri_encode(v, False)) for k, v in params.items())
    return "&".join(f"{k}={v}" for k, v in pairs)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret_key: str, date: str, region: str, service: str = "s3") -> bytes:
    key = _hmac(f"AWS4{secret_key}".encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def sign(
    method: str,
    host: str,
    path: str,
    params: dict[str, str],
    credentials: Credentials,
    region: str,
    now: datetime,
    payload_hash: str = EMPTY_SHA256,
) -> dict[str, str]:
    """The headers that authenticate the request: Host, X-Amz-Date, X-Amz-Content-Sha256, Authorization (and the
    session token's header when there is one). `path` is the request's path before encoding; `host` includes a
    non-default port."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    date = stamp[:8]
    headers = {"host": host, "x-amz-content-sha256": payload_hash, "x-amz-date": stamp}
    if credentials.session_token:
        headers["x-amz-security-token"] = credentials.session_token
    names = sorted(headers)
    canonical_headers = "".join(f"{n}:{headers[n].strip()}\n" for n in names)
    signed_headers = ";".join(names)
    request = "\n".join(
        [method, uri_encode(path, True), canonical_query(params), canonical_headers, signed_headers, payload_hash]
    )
    scope = f"{date}/{region}/s3/aws4_request"
    to_sign = "\n".join([ALGORITHM, stamp, scope, hashlib.sha256(request.encode()).hexdigest()])
    signature = hmac.new(signing_key(credentials.secret_key, date, region), to_sign.encode(), hashlib.sha256)
    headers["authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature.hexdigest()}"
    )
    return headers
