"""`yolo-workload fetch` against real servers on loopback: MinIO (S3, signatures checked) and HTTPS with its own CA.

Each failure the issue names ends in a message naming the field, the URI and the cause, with nothing left in the
cache or at the link that could pass for a complete fetch: wrong checksum, 403, missing key, unreachable endpoint,
truncated download, oversize, archive entry with `../`.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from remote_servers import ACCESS_KEY, SECRET_KEY, Https, Minio, Tls, free_port, make_ca, start_https, start_minio
from yolo_workloads.contract import FetchConfig, FetchSource, source_kind
from yolo_workloads.fetch.cli import FetchFailed, fetch_all

pytestmark = pytest.mark.workloads

BUCKET = "datasets"
PRIVATE = "private"
DATA_YAML = b"path: .\ntrain: images/train\nval: images/val\nnames:\n  0: square\n  1: circle\n"


def dataset_files() -> dict[str, bytes]:
    """A data set in Ultralytics' layout (contents are placeholders: fetching does not read them)."""
    return {
        "data.yaml": DATA_YAML,
        "images/train/a.jpg": b"\xff\xd8 image a",
        "images/val/b.jpg": b"\xff\xd8 image b",
        "labels/train/a.txt": b"0 0.5 0.5 0.2 0.2\n",
        "labels/val/b.txt": b"1 0.5 0.5 0.3 0.3\n",
    }


def zip_of(files: dict[str, bytes], top: str = "") -> bytes:
    """The same bytes for the same files: entries carry a fixed date, not the clock's (a checksum taken of one
    call's archive must match another's, even across a second)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(top + name, date_time=(2026, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def tgz_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Minio]:
    server = start_minio(tmp_path_factory.mktemp("minio"))
    server.bucket(BUCKET)
    server.bucket(PRIVATE)
    for name, data in dataset_files().items():
        server.put(BUCKET, f"shapes/{name}", data)
    server.put(BUCKET, "shapes.zip", zip_of(dataset_files(), top="shapes/"))
    server.put(BUCKET, "weights/yolo-test.pt", b"weights " * 1000)
    server.put(PRIVATE, "secret.pt", b"secret weights")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def https(tls: Tls) -> Iterator[Https]:
    server = start_https(tls)
    yield server
    server.stop()


def source(uri: str, link: Path, **kw: Any) -> FetchSource:
    fields: dict[str, Any] = {"field": "spec.data.source", "uri": uri, "kind": source_kind(uri), "max_bytes": 10**7}
    return FetchSource.model_validate({**fields, "link": str(link), **kw})


def s3(minio: Minio, uri: str, link: Path, **kw: Any) -> FetchSource:
    return source(uri, link, endpoint=minio.endpoint, credentials_env=True, **kw)


def config(tmp_path: Path, *sources: FetchSource, attempts: int = 1) -> FetchConfig:
    return FetchConfig(sources=list(sources), cache_dir=str(tmp_path / "cache"), attempts=attempts, timeout_seconds=5)


@pytest.fixture(autouse=True)
def s3_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)


def cache_entries(tmp_path: Path) -> list[str]:
    folder = tmp_path / "cache"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def failure(cfg: FetchConfig) -> FetchFailed:
    with pytest.raises(FetchFailed) as info:
        fetch_all(cfg, sleep=0)
    return info.value


def assert_nothing_left(tmp_path: Path, link: Path) -> None:
    assert cache_entries(tmp_path) == [], "a failed fetch must leave no cache entry, partial or not"
    assert not link.exists() and not link.is_symlink()


# --- S3 -------------------------------------------------------------------------------------------------------------


def test_s3_prefix_in_ultralytics_layout_is_fetched(minio: Minio, tmp_path: Path) -> None:
    link = tmp_path / "sources" / "data"
    (target,) = fetch_all(config(tmp_path, s3(minio, f"s3://{BUCKET}/shapes/", link)))
    assert link.resolve() == target.resolve()
    got = {str(p.relative_to(link.resolve())): p.read_bytes() for p in link.resolve().rglob("*") if p.is_file()}
    assert got == dataset_files()
    assert yaml.safe_load((link / "data.yaml").read_text())["names"] == {0: "square", 1: "circle"}


MANY = {"data.yaml": DATA_YAML, **{f"images/{i:03d}.jpg": bytes([i]) * (100 + i) for i in range(48)}}
"""A prefix of many small objects, as a data set of images is."""


def test_a_prefix_of_many_objects_is_fetched_several_objects_at_once(
    minio: Minio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, data in MANY.items():
        minio.put(BUCKET, f"many/{name}", data)
    parts, most = _record_streams(monkeypatch)
    link = tmp_path / "sources" / "many"
    fetch_all(config(tmp_path, s3(minio, f"s3://{BUCKET}/many/", link)))
    got = {str(p.relative_to(link.resolve())): p.read_bytes() for p in link.resolve().rglob("*") if p.is_file()}
    assert got == MANY
    assert most[0] > 1  # downloads overlapped (one at a time before 2026-12-05)
    assert parts == [None] * len(MANY)  # small objects: each whole


def test_an_object_of_a_prefix_that_fails_fails_the_whole_fetch_leaving_nothing(
    minio: Minio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from yolo_workloads.fetch.remote import Remote

    listed = Remote.list_prefix

    def with_a_ghost(self: Remote, bucket: str, prefix: str) -> list[Any]:
        objects = listed(self, bucket, prefix)
        ghost = self.s3_object(bucket, f"{prefix}images/gone.jpg")  # deleted between the listing and its GET
        return [*objects, type(ghost)(ghost.url, ghost.path, "images/gone.jpg", 10, '"etag"')]

    monkeypatch.setattr(Remote, "list_prefix", with_a_ghost)
    link = tmp_path / "sources" / "data"
    exc = failure(config(tmp_path, s3(minio, f"s3://{BUCKET}/shapes/", link)))
    assert f"(s3://{BUCKET}/shapes/): no such key" in str(exc) and exc.permanent
    assert_nothing_left(tmp_path, link)


def _record_streams(monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], list[int]]:
    """Remote.stream wrapped: the byte range of each call, and the most calls under way at once."""
    from yolo_workloads.fetch.remote import Remote

    stream, lock, parts, in_flight, most = Remote.stream, threading.Lock(), [], [0], [0]

    def recorded(self: Remote, obj: Any, part: tuple[int, int] | None = None) -> Iterator[bytes]:
        with lock:
            parts.append(part)
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        try:
            time.sleep(0.02)  # as a GET waits for its first byte
            yield from stream(self, obj, part)
        finally:
            with lock:
                in_flight[0] -= 1

    monkeypatch.setattr(Remote, "stream", recorded)
    return parts, most


def test_a_large_object_comes_in_byte_ranges_side_by_side(
    minio: Minio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from yolo_workloads.fetch import store

    data = os.urandom(1024 * 1024 + 123)  # an odd last part
    minio.put(BUCKET, "big/model.pt", data)
    monkeypatch.setattr(store, "PART_BYTES", 64 * 1024)
    parts, most = _record_streams(monkeypatch)
    link = tmp_path / "model.pt"
    fetch_all(config(tmp_path, s3(minio, f"s3://{BUCKET}/big/model.pt", link, sha256=sha(data))))
    assert link.read_bytes() == data
    size, step = len(data), 64 * 1024
    assert sorted(parts) == [(first, min(first + step, size) - 1) for first in range(0, size, step)]
    assert most[0] > 1


def test_parts_are_checked_against_a_declared_checksum_and_read_back_only_for_one(
    minio: Minio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from yolo_workloads.fetch import store

    data = os.urandom(300 * 1024)
    minio.put(BUCKET, "big/checked.pt", data)
    monkeypatch.setattr(store, "PART_BYTES", 64 * 1024)
    uri = f"s3://{BUCKET}/big/checked.pt"
    exc = failure(config(tmp_path, s3(minio, uri, tmp_path / "bad.pt", sha256="0" * 64)))
    assert f"wrong checksum: sha256 {sha(data)}, expected {'0' * 64}" in str(exc) and exc.permanent
    read_back = store._file_sha256

    def not_needed(path: Path) -> str:
        raise AssertionError(f"{path} read back, though its ETag keys the cache and no checksum is declared")

    monkeypatch.setattr(store, "_file_sha256", not_needed)
    fetch_all(config(tmp_path, s3(minio, uri, tmp_path / "keyed.pt")))
    assert (tmp_path / "keyed.pt").read_bytes() == data and read_back(tmp_path / "keyed.pt") == sha(data)


def test_an_archive_in_parts_unpacks_as_whole(minio: Minio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from yolo_workloads.fetch import store

    monkeypatch.setattr(store, "PART_BYTES", 100)
    parts, _ = _record_streams(monkeypatch)
    link = tmp_path / "sources" / "data"
    fetch_all(config(tmp_path, s3(minio, f"s3://{BUCKET}/shapes.zip", link)))
    assert {str(p.relative_to(link.resolve())): p.read_bytes() for p in link.resolve().rglob("*") if p.is_file()} == (
        dataset_files()
    )
    assert len(parts) > 2 and None not in parts


def test_a_part_of_an_object_changed_since_it_was_described_is_refused_as_transient(
    minio: Minio, tmp_path: Path
) -> None:
    from yolo_workloads.fetch.remote import Remote, SourceError

    minio.put(BUCKET, "big/moving.pt", b"first version " * 100)
    remote = Remote(s3(minio, f"s3://{BUCKET}/big/moving.pt", tmp_path / "m.pt"), 5)
    described = remote.describe(remote.s3_object(BUCKET, "big/moving.pt"))
    assert described.ranges and described.validator
    minio.put(BUCKET, "big/moving.pt", b"second version " * 100)
    with pytest.raises(SourceError) as info:
        list(remote.stream(described, (0, 99)))
    assert "changed while downloading (HTTP 412" in info.value.cause and not info.value.permanent


def test_s3_zip_archive_is_unpacked_and_its_only_folder_linked(minio: Minio, tmp_path: Path) -> None:
    data = zip_of(dataset_files(), top="shapes/")
    link = tmp_path / "data"
    fetch_all(config(tmp_path, s3(minio, f"s3://{BUCKET}/shapes.zip", link, sha256=sha(data))))
    assert (link / "data.yaml").read_bytes() == DATA_YAML
    assert (link / "labels" / "val" / "b.txt").exists()


def test_declared_sha256_hits_the_cache_without_any_network(minio: Minio, tmp_path: Path) -> None:
    data = b"weights " * 1000
    first = s3(minio, f"s3://{BUCKET}/weights/yolo-test.pt", tmp_path / "a.pt", sha256=sha(data))
    fetch_all(config(tmp_path, first))
    # The same content behind an endpoint that answers nothing: found in the cache by its checksum.
    dead = first.model_copy(update={"endpoint": f"http://127.0.0.1:{free_port()}", "link": str(tmp_path / "b.pt")})
    fetch_all(config(tmp_path, dead))
    assert (tmp_path / "b.pt").read_bytes() == data
    assert cache_entries(tmp_path) == [f"sha256-{sha(data)}"]


def test_without_sha256_the_etag_keys_the_cache(minio: Minio, tmp_path: Path) -> None:
    uri = f"s3://{BUCKET}/shapes/"
    fetch_all(config(tmp_path, s3(minio, uri, tmp_path / "one")))
    entry = (tmp_path / "one").resolve()
    stamp = (entry / "data.yaml").stat().st_mtime_ns
    fetch_all(config(tmp_path, s3(minio, uri, tmp_path / "two")))
    assert (tmp_path / "two").resolve() == entry, "a second replica must reuse the entry, not download again"
    assert (entry / "data.yaml").stat().st_mtime_ns == stamp
    assert len(cache_entries(tmp_path)) == 1


def test_wrong_checksum_fails_naming_the_source(minio: Minio, tmp_path: Path) -> None:
    uri = f"s3://{BUCKET}/weights/yolo-test.pt"
    link = tmp_path / "w.pt"
    exc = failure(config(tmp_path, s3(minio, uri, link, sha256="0" * 64)))
    assert str(exc).startswith(f"spec.data.source ({uri}): wrong checksum: sha256 ")
    assert exc.permanent
    assert_nothing_left(tmp_path, link)


def test_anonymous_request_to_a_private_bucket_is_403(minio: Minio, tmp_path: Path) -> None:
    uri = f"s3://{PRIVATE}/secret.pt"
    link = tmp_path / "w.pt"
    anonymous = source(uri, link, endpoint=minio.endpoint)
    exc = failure(config(tmp_path, anonymous))
    assert "access denied (HTTP 403" in str(exc) and uri in str(exc)
    assert exc.permanent
    assert_nothing_left(tmp_path, link)


def test_wrong_secret_key_is_refused_by_the_signature_check(
    minio: Minio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    exc = failure(config(tmp_path, s3(minio, f"s3://{PRIVATE}/secret.pt", tmp_path / "w.pt")))
    assert "HTTP 403" in str(exc) and exc.permanent


def test_missing_key_names_it(minio: Minio, tmp_path: Path) -> None:
    uri = f"s3://{BUCKET}/weights/absent.pt"
    exc = failure(config(tmp_path, s3(minio, uri, tmp_path / "w.pt")))
    assert f"({uri}): no such key" in str(exc) and exc.permanent


def test_empty_prefix_is_refused(minio: Minio, tmp_path: Path) -> None:
    exc = failure(config(tmp_path, s3(minio, f"s3://{BUCKET}/nothing-here/", tmp_path / "d")))
    assert "no objects under the prefix" in str(exc)


def test_unreachable_endpoint_is_retried_then_fails(tmp_path: Path) -> None:
    uri = f"s3://{BUCKET}/weights/yolo-test.pt"
    link = tmp_path / "w.pt"
    dead = source(uri, link, endpoint=f"http://127.0.0.1:{free_port()}", credentials_env=True)
    exc = failure(config(tmp_path, dead, attempts=2))
    assert f"({uri}): endpoint unreachable" in str(exc) and "(after 2 tries)" in str(exc)
    assert not exc.permanent
    assert_nothing_left(tmp_path, link)


def test_oversize_is_refused_before_downloading(minio: Minio, tmp_path: Path) -> None:
    link = tmp_path / "w.pt"
    exc = failure(config(tmp_path, s3(minio, f"s3://{BUCKET}/weights/yolo-test.pt", link, max_bytes=100)))
    assert "oversize: 8000 bytes, over the limit of 100" in str(exc) and exc.permanent
    assert_nothing_left(tmp_path, link)


def test_s3_over_https_with_its_own_ca(tls: Tls, tmp_path: Path) -> None:
    server = start_minio(tmp_path / "minio-tls", tls=tls)
    try:
        server.bucket(BUCKET)
        server.put(BUCKET, "w.pt", b"tls weights")
        uri = f"s3://{BUCKET}/w.pt"
        trusted = s3(server, uri, tmp_path / "w.pt", ca_file=str(tls.ca))
        fetch_all(config(tmp_path, trusted))
        assert (tmp_path / "w.pt").read_bytes() == b"tls weights"
        untrusted = s3(server, uri, tmp_path / "x.pt")
        exc = failure(config(tmp_path / "other", untrusted))
        assert "TLS verification failed" in str(exc) and "caBundle" in str(exc)
    finally:
        server.stop()


# --- HTTPS ------------------------------------------------------------------------------------------------------


def test_https_with_sha256_and_private_ca(https: Https, tls: Tls, tmp_path: Path) -> None:
    data = b"pretrained " * 500
    https.files["yolo11n.pt"] = data
    uri = f"{https.url}/files/yolo11n.pt"
    fetch_all(config(tmp_path, source(uri, tmp_path / "w.pt", sha256=sha(data), ca_file=str(tls.ca))))
    assert (tmp_path / "w.pt").read_bytes() == data
    before = https.hits["/files/yolo11n.pt"]
    fetch_all(config(tmp_path, source(uri, tmp_path / "again.pt", sha256=sha(data), ca_file=str(tls.ca))))
    assert https.hits["/files/yolo11n.pt"] == before, "a cache hit by checksum must not download again"


def test_a_server_that_answers_no_byte_ranges_is_read_whole(
    https: Https, tls: Tls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from yolo_workloads.fetch import store

    monkeypatch.setattr(store, "PART_BYTES", 100)  # this server sends no Accept-Ranges
    data = b"whole " * 1000
    https.files["whole.pt"] = data
    uri = f"{https.url}/files/whole.pt"
    fetch_all(config(tmp_path, source(uri, tmp_path / "w.pt", sha256=sha(data), ca_file=str(tls.ca))))
    assert (tmp_path / "w.pt").read_bytes() == data and https.hits["/files/whole.pt"] == 1


def test_a_server_that_announces_byte_ranges_but_ignores_them_is_read_whole(
    https: Https, tls: Tls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from yolo_workloads.fetch import store

    monkeypatch.setattr(store, "PART_BYTES", 100)
    data = b"ranges announced " * 1000
    https.files["liar.pt"] = data
    uri = f"{https.url}/rangeless/liar.pt"
    fetch_all(
        config(tmp_path, source(uri, tmp_path / "w.pt", sha256=sha(data), max_bytes=len(data), ca_file=str(tls.ca)))
    )
    assert (tmp_path / "w.pt").read_bytes() == data
    assert https.hits["/rangeless/liar.pt"] >= 2  # a range answered whole, then the whole object


def test_https_without_a_validator_is_keyed_by_content(https: Https, tls: Tls, tmp_path: Path) -> None:
    https.files["plain.pt"] = b"no etag"
    fetch_all(config(tmp_path, source(f"{https.url}/noetag/plain.pt", tmp_path / "w.pt", ca_file=str(tls.ca))))
    assert cache_entries(tmp_path) == [f"sha256-{sha(b'no etag')}"]


def test_https_redirect_is_followed(https: Https, tls: Tls, tmp_path: Path) -> None:
    https.files["moved.pt"] = b"moved weights"
    fetch_all(config(tmp_path, source(f"{https.url}/redirect/moved.pt", tmp_path / "w.pt", ca_file=str(tls.ca))))
    assert (tmp_path / "w.pt").read_bytes() == b"moved weights"


def test_https_403(https: Https, tls: Tls, tmp_path: Path) -> None:
    https.files["x.pt"] = b"x"
    exc = failure(config(tmp_path, source(f"{https.url}/forbidden/x.pt", tmp_path / "w.pt", ca_file=str(tls.ca))))
    assert "access denied (HTTP 403)" in str(exc) and exc.permanent


def test_truncated_download_is_retried_then_fails_leaving_nothing(https: Https, tls: Tls, tmp_path: Path) -> None:
    https.files["big.pt"] = b"z" * 200_000
    uri = f"{https.url}/truncated/big.pt"
    link = tmp_path / "w.pt"
    exc = failure(config(tmp_path, source(uri, link, ca_file=str(tls.ca)), attempts=2))
    assert f"({uri}): truncated download: " in str(exc) and "of 200000 bytes" in str(exc)
    assert https.hits["/truncated/big.pt"] == 2 and not exc.permanent
    assert_nothing_left(tmp_path, link)


def test_https_archive_with_dotdot_entry_is_refused(https: Https, tls: Tls, tmp_path: Path) -> None:
    https.files["evil.zip"] = zip_of({"data.yaml": DATA_YAML, "../escaped.txt": b"gotcha"})
    link = tmp_path / "data"
    exc = failure(config(tmp_path, source(f"{https.url}/files/evil.zip", link, ca_file=str(tls.ca))))
    assert "archive entry '../escaped.txt' escapes its folder" in str(exc) and exc.permanent
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "cache" / "escaped.txt").exists()
    assert_nothing_left(tmp_path, link)


def test_a_zip_of_many_entries_unpacks_side_by_side(
    https: Https, tls: Tls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from yolo_workloads.fetch import store

    files = {"data.yaml": DATA_YAML, **{f"images/train/{i:03d}.jpg": os.urandom(2000 + i) for i in range(100)}}
    https.files["many.zip"] = zip_of(files, top="many/")
    monkeypatch.setattr("yolo_workloads.system.cpu_budget", lambda: 4.0)
    write, threads = store._write, set()

    def recorded(f: Any, dest: Path, budget: Any) -> None:
        threads.add(threading.get_ident())
        time.sleep(0.005)
        write(f, dest, budget)

    monkeypatch.setattr(store, "_write", recorded)
    link = tmp_path / "d"
    fetch_all(config(tmp_path, source(f"{https.url}/files/many.zip", link, ca_file=str(tls.ca))))
    assert {str(p.relative_to(link.resolve())): p.read_bytes() for p in link.resolve().rglob("*") if p.is_file()} == (
        files
    )
    assert 1 < len(threads) <= 4  # side by side, within the CPU budget


def test_an_archive_that_unpacks_past_the_limit_is_refused(https: Https, tls: Tls, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(10):
            zf.writestr(f"z{i}.bin", bytes(4000))
    https.files["zeros.zip"] = buf.getvalue()  # 40 KB deflated to under 5 KB: the download passes the limit
    link = tmp_path / "d"
    exc = failure(config(tmp_path, source(f"{https.url}/files/zeros.zip", link, ca_file=str(tls.ca), max_bytes=5000)))
    assert "oversize: unpacks to more than the limit of 5000 bytes" in str(exc) and exc.permanent
    assert_nothing_left(tmp_path, link)


def test_a_zip_whose_data_is_corrupt_is_refused(https: Https, tls: Tls, tmp_path: Path) -> None:
    good = zip_of({"data.yaml": DATA_YAML, "images/a.jpg": b"A" * 5000})
    at = good.index(b"A" * 100)  # stored: the entry's bytes as they are
    https.files["bad.zip"] = good[:at] + b"B" + good[at + 1 :]
    link = tmp_path / "d"
    exc = failure(config(tmp_path, source(f"{https.url}/files/bad.zip", link, ca_file=str(tls.ca))))
    assert "not a readable .zip or tar archive (Bad CRC-32" in str(exc) and exc.permanent
    assert_nothing_left(tmp_path, link)


def test_tar_gz_archive_is_unpacked(https: Https, tls: Tls, tmp_path: Path) -> None:
    https.files["shapes.tar.gz"] = tgz_of(dataset_files())
    fetch_all(config(tmp_path, source(f"{https.url}/files/shapes.tar.gz", tmp_path / "d", ca_file=str(tls.ca))))
    assert (tmp_path / "d" / "data.yaml").read_bytes() == DATA_YAML


def test_a_tar_gz_whose_last_entry_escapes_is_refused_whole_leaving_nothing(
    https: Https, tls: Tls, tmp_path: Path
) -> None:
    https.files["late.tar.gz"] = tgz_of({**dataset_files(), "../late.txt": b"gotcha"})  # good files first
    link = tmp_path / "d"
    exc = failure(config(tmp_path, source(f"{https.url}/files/late.tar.gz", link, ca_file=str(tls.ca))))
    assert "archive entry '../late.txt' escapes its folder" in str(exc) and exc.permanent
    assert not list(tmp_path.rglob("late.txt"))
    assert_nothing_left(tmp_path, link)  # the entries written before it went with the partial folder


def test_bytes_that_are_no_archive_are_refused(https: Https, tls: Tls, tmp_path: Path) -> None:
    https.files["noise.tar.gz"] = bytes(range(256)) * 64
    link = tmp_path / "d"
    exc = failure(config(tmp_path, source(f"{https.url}/files/noise.tar.gz", link, ca_file=str(tls.ca))))
    assert "not a readable .zip or tar archive" in str(exc) and exc.permanent
    assert_nothing_left(tmp_path, link)


def test_tar_with_a_symlink_is_refused(https: Https, tls: Tls, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("data.yaml")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    https.files["link.tar"] = buf.getvalue()
    exc = failure(config(tmp_path, source(f"{https.url}/files/link.tar", tmp_path / "d", ca_file=str(tls.ca))))
    assert "is a link (links are refused)" in str(exc)


# --- the verb, as the init container runs it -------------------------------------------------------------------


def test_cli_exit_code_and_termination_message(minio: Minio, tmp_path: Path) -> None:
    uri = f"s3://{BUCKET}/weights/yolo-test.pt"
    cfg = config(tmp_path, s3(minio, uri, tmp_path / "w.pt", sha256="1" * 64))
    log = tmp_path / "termination-log"
    path = tmp_path / "fetch.yaml"
    path.write_text(yaml.safe_dump(cfg.model_copy(update={"termination_log": str(log)}).model_dump(mode="json")))
    done = subprocess.run(
        [sys.executable, "-m", "yolo_workloads.cli", "fetch", "--config", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert log.read_text().startswith(f"spec.data.source ({uri}): wrong checksum")
