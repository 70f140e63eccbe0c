"""The per-content cache and the one fetch procedure: key, download, verify, unpack, publish, link.

A cache entry `<cache>/<key>/content` is built under `<cache>/.partial-*` and renamed into place only once it is
complete and verified, so a reader (another job, another replica, a restarted pod) sees a whole entry or none; a
failed fetch removes its partial folder. The key is the declared SHA-256 when the spec gives one (a hit then needs
no network at all), else the server's validators (ETag or Last-Modified, with sizes) of every object, else the
downloaded content's own SHA-256.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import stat
import tarfile
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from pathlib import Path, PurePosixPath
from typing import IO
from urllib.parse import urlsplit

from yolo_workloads.contract import FetchSource
from yolo_workloads.fetch.remote import CHUNK, CONNECTIONS, RangesIgnored, Remote, RemoteObject, SourceError

CONTENT = "content"
UNZIP_THREADS = 8
"""A zip's entries unpacked at once at most (and no more than the CPU budget holds)."""
PART_BYTES = 16 * 1024 * 1024
"""A large object's byte ranges (objects over twice this come in parts): AWS's own CLI downloads in 8 MB parts."""


def escapes(name: str) -> bool:
    """True when an archive entry or object path would land outside its folder: absolute, a drive letter, `..`."""
    text = name.replace("\\", "/")
    drive = len(text) > 1 and text[1] == ":"
    return not text.strip("/") or text.startswith("/") or drive or ".." in PurePosixPath(text).parts


def fetch(source: FetchSource, cache_dir: Path, timeout: float) -> Path:
    """Bring the source into the cache (or find it there) and point `source.link` at it; return the target."""
    declared = cache_dir / f"sha256-{source.sha256}" if source.sha256 else None
    if declared is not None and (declared / CONTENT).exists():
        entry = declared  # the content the spec names is here: no request at all
    else:
        remote = Remote(source, timeout) if not source.uri.startswith("file://") else None
        objects = _objects(source, remote)
        key = _key(source, objects)
        found = cache_dir / key if key else None
        entry = (
            found
            if found is not None and (found / CONTENT).exists()
            else _build(source, remote, objects, cache_dir, key)
        )
    target = _target(entry / CONTENT, source)
    _link(Path(source.link), target)
    return target


# --- what the source is ---------------------------------------------------------------------------------------


def _objects(source: FetchSource, remote: Remote | None) -> list[RemoteObject]:
    parts = urlsplit(source.uri)
    if remote is None:
        path = Path(parts.path)
        if not path.is_file():
            raise SourceError(f"no such file {path}", permanent=True)
        return [RemoteObject(str(path), "", path.name, path.stat().st_size, None)]
    if source.uri.startswith("s3://"):
        bucket, key = parts.netloc, parts.path.lstrip("/")
        if source.kind == "tree":
            objects = remote.list_prefix(bucket, key)
            bad = next((o.relative for o in objects if escapes(o.relative)), None)
            if bad is not None:
                raise SourceError(f"object {bad!r} escapes its folder", permanent=True)
            return objects
        return [remote.describe(remote.s3_object(bucket, key))]
    name = PurePosixPath(parts.path).name or "download"
    return [remote.describe(RemoteObject(source.uri, "", name, None, None))]


def _key(source: FetchSource, objects: list[RemoteObject]) -> str | None:
    if source.sha256:
        return f"sha256-{source.sha256}"
    if any(o.validator is None for o in objects):
        return None  # known only once downloaded: the content's hash
    listing = [[o.relative, o.size, o.validator] for o in objects]
    identity = json.dumps([source.uri, source.kind, listing], sort_keys=True)
    return "v-" + hashlib.sha256(identity.encode()).hexdigest()[:40]


def _target(content: Path, source: FetchSource) -> Path:
    """The file, or the folder; a folder whose only entry is a folder stands for that folder (`coco8/...`)."""
    if source.kind == "file":
        return next(content.iterdir())
    entries = list(content.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else content


# --- building an entry ------------------------------------------------------------------------------------------


def _build(
    source: FetchSource, remote: Remote | None, objects: list[RemoteObject], cache_dir: Path, key: str | None
) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=cache_dir))
    try:
        digest = _fill(source, remote, objects, partial / CONTENT, keyed=key is not None)
        entry = cache_dir / (key or f"sha256-{digest}")
        try:
            partial.rename(entry)
        except OSError:
            if not (entry / CONTENT).exists():  # a concurrent fetch published the same content: keep theirs
                raise
        return entry
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _fill(source: FetchSource, remote: Remote | None, objects: list[RemoteObject], content: Path, keyed: bool) -> str:
    """Download (and unpack) into `content`; return the SHA-256 of the downloaded file (of the listing for a tree;
    "" where it was not needed: the entry is `keyed` by validators and no checksum is declared)."""
    declared = sum(o.size or 0 for o in objects)
    if declared > source.max_bytes:
        raise SourceError(f"oversize: {declared} bytes, over the limit of {source.max_bytes}", permanent=True)
    content.mkdir()
    if source.kind == "tree":
        _download_all(source, remote, objects, content)
        return hashlib.sha256(json.dumps([[o.relative, o.validator] for o in objects]).encode()).hexdigest()
    (obj,) = objects
    needed = not keyed or source.sha256 is not None
    if source.kind == "file":
        return _download(source, remote, obj, content / obj.relative, _Budget(source.max_bytes), needed)
    archive = content.parent / "archive"
    digest = _download(source, remote, obj, archive, _Budget(source.max_bytes), needed)
    unpack(archive, content, source.max_bytes)
    archive.unlink()
    if not any(content.iterdir()):
        raise SourceError("the archive holds no files", permanent=True)
    return digest


class _Budget:
    """The bytes a fetch may still download (or unpack), shared by the threads that do it."""

    def __init__(self, limit: int, over: str = "more than the limit of") -> None:
        self.limit, self.left, self.over, self._lock = limit, limit, over, threading.Lock()

    def refund(self, size: int) -> None:
        """Bytes spent on parts thrown away (at most what they were)."""
        with self._lock:
            self.left = min(self.limit, self.left + size)

    def spend(self, size: int) -> None:
        with self._lock:
            self.left -= size
            over = self.left < 0
        if over:  # a server that sends more than it listed, an archive that unpacks to more
            raise SourceError(f"oversize: {self.over} {self.limit} bytes", permanent=True)


def _download_all(source: FetchSource, remote: Remote | None, objects: list[RemoteObject], content: Path) -> None:
    """Every object of a prefix into `content`, CONNECTIONS at a time."""
    budget = _Budget(source.max_bytes)
    _side_by_side(functools.partial(_download, source, remote, o, content / o.relative, budget) for o in objects)


def _side_by_side(jobs: Iterable[Callable[[], object]], threads: int = CONNECTIONS) -> None:
    """The jobs on `threads` threads, at most twice as many submitted ahead (a prefix of 100,000 objects holds no
    100,000 futures); the first failure stops the rest (those under way finish) and is raised."""
    running: set[Future[object]] = set()
    with ThreadPoolExecutor(threads, thread_name_prefix="fetch") as pool:
        try:
            for job in jobs:
                if len(running) >= 2 * threads:
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        future.result()
                running.add(pool.submit(job))
            for future in as_completed(running):
                future.result()
        finally:
            for future in running:
                future.cancel()


def _download(
    source: FetchSource,
    remote: Remote | None,
    obj: RemoteObject,
    dest: Path,
    budget: _Budget,
    digest_needed: bool = False,
) -> str:
    """One object into `dest`, within the shared byte budget, checked against the declared SHA-256 (a source's
    single object; a prefix's objects are not); a large one whose server answers byte ranges in parts side by side
    (`_download_parts`), its SHA-256 then read back from the file only where `digest_needed`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if remote is not None and obj.ranges and (obj.size or 0) > 2 * PART_BYTES:
        try:
            _download_parts(remote, obj, dest, budget)
        except RangesIgnored:  # announced, then not kept (a proxy or CDN in between): whole, as any other
            budget.refund(int(obj.size or 0))
        else:
            return _checked(source, _file_sha256(dest) if digest_needed else "", digest_needed)
    return _checked(source, _download_whole(remote, obj, dest, budget), digest_needed)


def _checked(source: FetchSource, digest: str, against_declared: bool) -> str:
    if against_declared and source.sha256 and digest != source.sha256:
        raise SourceError(f"wrong checksum: sha256 {digest}, expected {source.sha256}", permanent=True)
    return digest


def _download_whole(remote: Remote | None, obj: RemoteObject, dest: Path, budget: _Budget) -> str:
    sha = hashlib.sha256()
    with dest.open("wb") as out:
        for chunk in _chunks(remote, obj):
            budget.spend(len(chunk))
            sha.update(chunk)
            out.write(chunk)
    return sha.hexdigest()


def _download_parts(remote: Remote, obj: RemoteObject, dest: Path, budget: _Budget) -> None:
    """A large object in byte ranges of PART_BYTES, CONNECTIONS at a time, each written at its offset (one stream is
    bounded by one connection's window and the server's rate for it; several carry several times that), each of the
    version described (If-Match)."""
    size = int(obj.size or 0)
    with dest.open("wb") as out:
        out.truncate(size)
    fd = os.open(dest, os.O_WRONLY)
    try:

        def part(first: int) -> None:
            offset = first
            for chunk in remote.stream(obj, (first, min(first + PART_BYTES, size) - 1)):
                budget.spend(len(chunk))
                os.pwrite(fd, chunk, offset)
                offset += len(chunk)

        _side_by_side(functools.partial(part, first) for first in range(0, size, PART_BYTES))
    finally:
        os.close(fd)


def _file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in _read(f):
            sha.update(chunk)
    return sha.hexdigest()


def _chunks(remote: Remote | None, obj: RemoteObject) -> Iterator[bytes]:
    if remote is not None:
        yield from remote.stream(obj)
        return
    with open(obj.url, "rb") as f:
        yield from _read(f)


def _read(f: IO[bytes]) -> Iterator[bytes]:
    """A file's bytes in CHUNK pieces."""
    while chunk := f.read(CHUNK):
        yield chunk


# --- unpacking --------------------------------------------------------------------------------------------------


def unpack(archive: Path, dest: Path, max_bytes: int) -> None:
    """A .zip or tar (optionally gzip) into `dest`: regular files and folders only, none outside `dest`, at most
    `max_bytes` unpacked. Any bad entry refuses the whole archive: a zip's are all checked first (its directory), a
    tar's each before it is written, and the caller publishes `dest` only once all are (a partial folder is
    removed)."""
    budget = _unpack_budget(max_bytes)
    try:
        if zipfile.is_zipfile(archive):
            _unzip(archive, dest, budget)
            return
        with tarfile.open(archive, "r|*") as tf:  # one pass over the stream: a .tar.gz is decompressed once
            for m in tf:
                _check_entry(m.name, m.issym() or m.islnk(), special=not (m.isfile() or m.isdir()))
                member = tf.extractfile(m) if m.isfile() else None
                if member is not None:  # checked before written; a bad entry later refuses the whole entry
                    _write(member, dest / m.name, budget)
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError) as exc:  # corrupt data, a bad CRC
        raise SourceError(f"not a readable .zip or tar archive ({exc})", permanent=True) from None


def _unpack_budget(max_bytes: int) -> _Budget:
    """The bytes an archive may unpack to, shared by the threads that write its entries."""
    return _Budget(max_bytes, "unpacks to more than the limit of")


def _unzip(archive: Path, dest: Path, budget: _Budget) -> None:
    """A zip's entries side by side, within the CPU budget (inflating and writing release the GIL), each thread
    reading through a handle of its own."""
    from yolo_workloads import system

    with zipfile.ZipFile(archive) as zf:
        entries = zf.infolist()
    for info in entries:
        _check_entry(info.filename, stat.S_ISLNK(info.external_attr >> 16))
    local, handles = threading.local(), []

    def extract(info: zipfile.ZipInfo) -> None:
        if not hasattr(local, "zip"):
            local.zip = zipfile.ZipFile(archive)
            handles.append(local.zip)
        with local.zip.open(info) as f:
            _write(f, dest / info.filename, budget)

    threads = max(1, min(UNZIP_THREADS, int(system.cpu_budget())))
    try:
        _side_by_side((functools.partial(extract, i) for i in entries if not i.is_dir()), threads)
    finally:
        for handle in handles:
            handle.close()


def _check_entry(name: str, link: bool, special: bool = False) -> None:
    if escapes(name):
        raise SourceError(f"archive entry {name!r} escapes its folder", permanent=True)
    if link:
        raise SourceError(f"archive entry {name!r} is a link (links are refused)", permanent=True)
    if special:
        raise SourceError(f"archive entry {name!r} is not a file or folder", permanent=True)


def _write(f: IO[bytes], dest: Path, budget: _Budget) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as out:
        for chunk in _read(f):
            budget.spend(len(chunk))
            out.write(chunk)


# --- the link ---------------------------------------------------------------------------------------------------


def _link(link: Path, target: Path) -> None:
    """Point `link` at `target`, replacing any earlier link atomically (a new symlink renamed over it)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)
