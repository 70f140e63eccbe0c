"""Reading remote objects: S3 (SigV4, path-style) and HTTP(S), over urllib3, with causes a person can act on.

Every failure becomes a `SourceError` carrying a short cause (`HTTP 403 AccessDenied: ...`, `no such key`,
`endpoint unreachable: ...`, `truncated download: 1000 of 4096 bytes`) and whether retrying could help.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ProtocolError, SSLError

from yolo_workloads.contract import FetchSource
from yolo_workloads.fetch.sigv4 import UNSIGNED_PAYLOAD, Credentials, sign, uri_encode

CHUNK = 1024 * 1024
CONNECTIONS = 16
"""Objects of a prefix, or byte ranges of a large object, downloaded at once, each on a connection of its own (kept
for the next). S3 answers each GET only after its first-byte latency, so a data set of many small images fetched one
object at a time waits on latency, not on bandwidth (docs/sources.md)."""
CREDENTIAL_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class SourceError(Exception):
    """A source that cannot be fetched. `permanent`: the source itself is wrong, retrying cannot help."""

    def __init__(self, cause: str, permanent: bool) -> None:
        super().__init__(cause)
        self.cause = cause
        self.permanent = permanent


class RangesIgnored(SourceError):
    """A server that announced byte ranges sent something else for one: the object is read whole instead."""


@dataclass(frozen=True)
class RemoteObject:
    """One object to download: its request, its size and validator (ETag or Last-Modified) when known."""

    url: str
    path: str
    """The request path before encoding (what SigV4 signs); empty for plain HTTP."""
    relative: str
    """Its path under a prefix (for a tree); its file name otherwise."""
    size: int | None
    validator: str | None
    ranges: bool = False
    """The server answers byte ranges of it (`Accept-Ranges: bytes` to its HEAD)."""


def credentials(source: FetchSource) -> Credentials | None:
    """The S3 keys from the mounted Secret or the environment; None (anonymous) when neither names any."""
    values: dict[str, str] = {}
    for name in CREDENTIAL_NAMES:
        if source.credentials_dir:
            file = Path(source.credentials_dir) / name
            if file.is_file():
                values[name] = file.read_text().strip()
        elif source.credentials_env and os.environ.get(name):
            values[name] = os.environ[name]
    if not (source.credentials_dir or source.credentials_env):
        return None
    if not values.get("AWS_ACCESS_KEY_ID") or not values.get("AWS_SECRET_ACCESS_KEY"):
        where = f"the Secret mounted at {source.credentials_dir}" if source.credentials_dir else "the environment"
        raise SourceError(f"{where} lacks AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY", permanent=True)
    token = values.get("AWS_SESSION_TOKEN")
    return Credentials(values["AWS_ACCESS_KEY_ID"], values["AWS_SECRET_ACCESS_KEY"], token)


class Remote:
    """A client for one source: its pool (CA bundle, timeouts), its endpoint and credentials."""

    def __init__(self, source: FetchSource, timeout: float) -> None:
        self.source = source
        self.pool = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED",
            ca_certs=source.ca_file,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            # Redirects are followed (release assets often redirect; urllib3 drops Authorization on a cross-host
            # one); everything else is tried again by fetch_one, which knows which failures are transient.
            retries=urllib3.Retry(total=None, connect=0, read=0, redirect=5, status=0, other=0),
            maxsize=CONNECTIONS,  # each downloading thread keeps its connection
        )
        self.creds = credentials(source) if source.uri.startswith("s3://") else None
        endpoint = source.endpoint or f"https://s3.{source.region}.amazonaws.com"
        self.endpoint = endpoint.rstrip("/")

    # --- requests ---------------------------------------------------------------------------------------------

    def _s3_headers(self, method: str, path: str, params: dict[str, str]) -> dict[str, str]:
        if self.creds is None:
            return {}
        host = urlsplit(self.endpoint).netloc
        now = datetime.now(UTC)
        return sign(method, host, path, params, self.creds, self.source.region, now, UNSIGNED_PAYLOAD)

    def request(
        self, method: str, obj: RemoteObject, params: dict[str, str] | None = None, extra: dict[str, str] | None = None
    ) -> Any:
        """Send one request (`extra`: headers outside the signature); raise SourceError for anything but 2xx. The
        response streams (caller releases)."""
        params = params or {}
        headers = {**(self._s3_headers(method, obj.path, params) if obj.path else {}), **(extra or {})}
        query = "&".join(f"{uri_encode(k, False)}={uri_encode(v, False)}" for k, v in sorted(params.items()))
        url = obj.url + (f"?{query}" if query else "")
        try:
            response = self.pool.request(method, url, headers=headers, preload_content=False, redirect=True)
        except Urllib3Error as exc:
            if isinstance(exc, SSLError) or isinstance(getattr(exc, "reason", None), SSLError):
                cause = f"TLS verification failed ({_reason(exc)}); set caBundle for a private CA"
                raise SourceError(cause, permanent=True) from None
            raise SourceError(f"endpoint unreachable: {_reason(exc)}", permanent=False) from None
        if response.status >= 300:
            body = response.read(64 * 1024) if method != "HEAD" else b""
            response.release_conn()
            raise http_error(response.status, body, s3=bool(obj.path))
        return response

    # --- what to download ---------------------------------------------------------------------------------------

    def s3_object(self, bucket: str, key: str) -> RemoteObject:
        path = f"/{bucket}/{key}"
        return RemoteObject(f"{self.endpoint}{uri_encode(path, True)}", path, key.rsplit("/", 1)[-1], None, None)

    def describe(self, obj: RemoteObject) -> RemoteObject:
        """HEAD: the object's size and validator (raises for 403, 404 and the like before any download)."""
        response = self.request("HEAD", obj)
        response.release_conn()
        length = response.headers.get("Content-Length")
        validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
        ranges = response.headers.get("Accept-Ranges", "").lower() == "bytes"
        return RemoteObject(obj.url, obj.path, obj.relative, int(length) if length else None, validator, ranges)

    def list_prefix(self, bucket: str, prefix: str) -> list[RemoteObject]:
        """ListObjectsV2 of every object under the prefix (folder markers left out)."""
        found: list[RemoteObject] = []
        token: str | None = None
        listing = RemoteObject(f"{self.endpoint}{uri_encode(f'/{bucket}', True)}", f"/{bucket}", "", None, None)
        while True:
            params = {"list-type": "2", "prefix": prefix}
            if token:
                params["continuation-token"] = token
            response = self.request("GET", listing, params)
            root = ET.fromstring(response.read())
            response.release_conn()
            ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
            for item in root.iter(f"{ns}Contents"):
                key = item.findtext(f"{ns}Key") or ""
                if key.endswith("/"):
                    continue
                obj = self.s3_object(bucket, key)
                size, etag = item.findtext(f"{ns}Size"), item.findtext(f"{ns}ETag")
                found.append(RemoteObject(obj.url, obj.path, key[len(prefix) :], int(size or 0), etag))
            if (root.findtext(f"{ns}IsTruncated") or "false") != "true":
                break
            token = root.findtext(f"{ns}NextContinuationToken")
        if not found:
            raise SourceError(f"no objects under the prefix {prefix!r} of bucket {bucket!r}", permanent=True)
        return found

    def stream(self, obj: RemoteObject, part: tuple[int, int] | None = None) -> Iterator[bytes]:
        """The object's bytes, or those of `part` (first, last: a byte range, of the version described); a transfer
        that ends before its Content-Length raises a transient SourceError."""
        response = self.request("GET", obj, extra=_range_headers(obj, part) if part else None)
        if part is not None and response.status != 206:
            response.release_conn()
            raise RangesIgnored(f"the server answered a byte range with HTTP {response.status}", permanent=False)
        expected = response.headers.get("Content-Length")
        received = 0
        try:
            for chunk in response.stream(CHUNK):
                received += len(chunk)
                yield chunk
        except (ProtocolError, Urllib3Error) as exc:
            total = f" of {expected}" if expected else ""
            raise SourceError(f"truncated download: {received}{total} bytes ({_reason(exc)})", False) from None
        finally:
            response.release_conn()
        if expected is not None and received != int(expected):
            raise SourceError(f"truncated download: {received} of {expected} bytes", permanent=False)


def _range_headers(obj: RemoteObject, part: tuple[int, int]) -> dict[str, str]:
    """A byte range of the version that was described: one changed meanwhile is refused (412), not mixed in."""
    headers = {"Range": f"bytes={part[0]}-{part[1]}"}
    if obj.validator and obj.validator.startswith('"'):
        headers["If-Match"] = obj.validator
    elif obj.validator and not obj.validator.startswith("W/"):  # a weak ETag never matches: no precondition
        headers["If-Unmodified-Since"] = obj.validator  # a Last-Modified date
    return headers


def http_error(status: int, body: bytes, s3: bool = False) -> SourceError:
    """A cause from an HTTP status and, for S3, its XML error's Code and Message (a HEAD has no body: an S3 404
    is then a missing key)."""
    code = message = ""
    if body.lstrip().startswith(b"<"):
        try:
            root = ET.fromstring(body)
            code, message = root.findtext("Code") or "", root.findtext("Message") or ""
        except ET.ParseError:
            pass
    named = {403: "access denied", 401: "unauthorised", 404: "not found", 412: "changed while downloading"}.get(
        status, ""
    )
    if code == "NoSuchKey" or (status == 404 and not code):
        named = "no such key" if code == "NoSuchKey" or s3 else "not found"
    elif code == "NoSuchBucket":
        named = "no such bucket"
    detail = ": ".join(p for p in (f"HTTP {status}", code, message) if p)
    cause = f"{named} ({detail})" if named else detail
    return SourceError(cause, permanent=status < 500 and status not in (412, 429))  # 412: fetched anew


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc)[:300]
