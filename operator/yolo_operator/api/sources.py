"""Sources named by URI: training data, initial weights and served weights from S3, HTTPS or a volume claim.

`s3://bucket/key` (any S3-compatible endpoint, credentials from a Secret), `https://host/path` (with an optional
SHA-256), `pvc://claim/path` (a PersistentVolumeClaim in the namespace, mounted rather than downloaded). What a URI
may name depends on its use: weights end in `.pt`, data is an archive, an S3 prefix ending in `/`, or (on a claim)
a dataset YAML. Every rule is CEL for the API server and Python for the local runner alike.
"""

from __future__ import annotations

from typing import Annotated, ClassVar
from urllib.parse import urlsplit

from pydantic import StringConstraints
from yolo_workloads.contract import ARCHIVE_SUFFIXES

from yolo_operator.api.common import DNS_LABEL, ApiModel, Name, Quantity, is_relative_inside
from yolo_operator.api.rules import Rule
from yolo_operator.quantity import parse_quantity

SOURCE_URI = (
    r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/\S*"
    r"|https://[^\s/?#]+/\S*"
    r"|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?/\S+)$"
)
"""`s3://bucket/key-or-prefix`, `https://host/path`, `pvc://claim/path`."""
DEFAULT_MAX_SIZE = "20Gi"
DEFAULT_REGION = "us-east-1"
_ARCHIVE_CEL = " || ".join(f"self.uri.lowerAscii().endsWith('{s}')" for s in ARCHIVE_SUFFIXES)


def max_bytes(source: Source) -> int:
    """The size limit in bytes (the default when unset)."""
    return int(parse_quantity(source.max_size if source.max_size is not None else DEFAULT_MAX_SIZE))


def pvc_parts(uri: str) -> tuple[str, str]:
    """`pvc://claim/some/path` → (claim, some/path)."""
    parts = urlsplit(uri)
    return parts.netloc, parts.path.lstrip("/")


def _path_of(uri: str) -> str:
    return urlsplit(uri).path if uri.startswith("https://") else uri


def is_archive(uri: str) -> bool:
    return _path_of(uri).lower().endswith(ARCHIVE_SUFFIXES)


class CaBundle(ApiModel):
    """A PEM bundle of certificate authorities in a ConfigMap, trusted instead of the image's own."""

    config_map_name: Name
    """The ConfigMap, in the resource's namespace."""
    key: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")] = "ca.crt"
    """Its key holding the PEM text."""


class Source(ApiModel):
    """A file, archive or folder named by URI, fetched once before the workload starts (`pvc://` is mounted)."""

    uri: Annotated[str, StringConstraints(min_length=6, max_length=2048, pattern=SOURCE_URI)]
    """`s3://bucket/key`, `s3://bucket/prefix/` (a folder), `https://host/path` or `pvc://claim/path`."""
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = None
    """Expected SHA-256 (hex) of the file or archive: a mismatch fails the resource, and the per-content cache
    finds a match without asking the server."""
    max_size: Quantity | None = None
    """Largest download (a prefix's objects together), and largest unpacked archive; 20Gi when unset."""
    endpoint: Annotated[str, StringConstraints(max_length=1024, pattern=r"^https?://[^\s/?#]+/?$")] | None = None
    """S3 only: the endpoint of an S3-compatible store (`https://minio.storage:9000`); AWS when unset."""
    region: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=DNS_LABEL)] | None = None
    """S3 only: the region requests are signed for; us-east-1 when unset."""
    credentials_secret: Name | None = None
    """S3 only: a Secret with keys `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and optionally
    `AWS_SESSION_TOKEN`); anonymous requests when unset."""
    ca_bundle: CaBundle | None = None
    """Certificate authorities for an https URI or S3 endpoint signed by a private CA."""

    __rules__: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self.uri.startsWith('s3://') || (!has(self.endpoint) && !has(self.credentialsSecret) && "
            "!has(self.region))",
            message="endpoint, region and credentialsSecret apply to s3:// URIs only",
            check=lambda s: (
                s.uri.startswith("s3://") or (s.endpoint is None and s.credentials_secret is None and s.region is None)
            ),
            field="endpoint",
        ),
        Rule(
            cel="!self.uri.startsWith('pvc://') || (!has(self.caBundle) && !has(self.sha256))",
            message="caBundle and sha256 do not apply to pvc:// URIs (nothing is downloaded)",
            check=lambda s: not s.uri.startswith("pvc://") or (s.ca_bundle is None and s.sha256 is None),
            field="uri",
        ),
        Rule(
            cel="!self.uri.startsWith('pvc://') || !self.uri.matches('^pvc://[^/]+/(.*/)?[.][.](/|$)')",
            message="a pvc:// path must not contain a '..' segment",
            check=lambda s: not s.uri.startswith("pvc://") or is_relative_inside(pvc_parts(s.uri)[1]),
            field="uri",
        ),
        Rule(
            cel="!self.uri.endsWith('/') || (self.uri.startsWith('s3://') && !has(self.sha256))",
            message="a folder (a URI ending in '/') must be an s3:// prefix, without sha256",
            check=lambda s: not s.uri.endswith("/") or (s.uri.startswith("s3://") and s.sha256 is None),
            field="uri",
        ),
    )


def _weights_rule() -> Rule:
    return Rule(
        cel="self.uri.matches('^[^?#]*[.]pt([?#].*)?$')",
        message="uri must name PyTorch weights: a path ending in .pt",
        check=lambda s: _path_of(s.uri).endswith(".pt"),
        field="uri",
    )


class WeightsSource(Source):
    """Weights (`.pt`) by URI."""

    __rules__ = (*Source.__rules__, _weights_rule())


def _data_ok(source: Source) -> bool:
    uri = source.uri
    if uri.startswith("pvc://"):
        return is_archive(uri) or uri.lower().endswith((".yaml", ".yml"))
    return is_archive(uri) or (uri.startswith("s3://") and uri.endswith("/"))


class DataSource(Source):
    """A data set in Ultralytics' layout by URI: an archive, an S3 prefix, or a dataset YAML on a claim."""

    yaml: Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=r"^[^\x00]+[.]ya?ml$")] = "data.yaml"
    """The dataset YAML inside the archive or prefix (its only top folder is looked into when it holds
    everything); its paths are relative to the YAML's folder."""

    __rules__ = (
        *Source.__rules__,
        Rule(
            cel=f"{_ARCHIVE_CEL} || (self.uri.startsWith('s3://') && self.uri.endsWith('/')) || "
            "(self.uri.startsWith('pvc://') && (self.uri.endsWith('.yaml') || self.uri.endsWith('.yml')))",
            message="uri must name an archive (.zip, .tar.gz, .tgz, .tar), an s3:// prefix ending in '/', or a "
            "dataset YAML on a pvc://",
            check=_data_ok,
            field="uri",
        ),
        Rule(
            cel="!self.yaml.startsWith('/') && !self.yaml.matches('(^|/)[.][.](/|$)')",
            message="yaml must be relative to the data set's folder (no leading '/', no '..' segment)",
            check=lambda s: is_relative_inside(s.yaml),
            field="yaml",
        ),
    )


class SourceCache(ApiModel):
    """Where fetched sources are kept, so later jobs and other replicas find them without downloading again."""

    claim_name: Name
    """A PersistentVolumeClaim (ReadWriteMany to share it between pods on different nodes)."""
    path: Annotated[str, StringConstraints(max_length=1024)] = ".yolo-sources"
    """Folder inside the volume."""

    __rules__ = (
        Rule(
            cel="!self.path.startsWith('/') && !self.path.matches('(^|/)[.][.](/|$)')",
            message="path must be relative to the volume's root (no leading '/', no '..' segment)",
            check=lambda c: is_relative_inside(c.path),
            field="path",
        ),
    )
