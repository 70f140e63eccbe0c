"""A watch-fed, in-memory copy of one kind of object (client-go's informer, small): LIST once, then WATCH from that
resourceVersion, relist when the server says the version is gone (410), reconnect after errors.

Why (issue 10): reading Jobs, pods, Deployments and nodes fresh in every reconcile was most of the operator's API
traffic at 1,300 resources, and watching them through Kopf put every status update of every child through Kopf's
per-event machinery on its one event-loop thread. Here each watch is a plain thread that decodes a line, keeps a
trimmed copy (`project`) and tells `on_change` which object changed; reconciles read the copies.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from typing import Any
from urllib.parse import urlencode

from kubernetes.client.exceptions import ApiException

from yolo_operator.k8s.client import ApiError, Kube, label_selector, resource_path

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[str, str]
"""(namespace or "", name)."""
OnChange = Callable[[str, Obj], None]
"""Called with ("ADDED" | "MODIFIED" | "DELETED", the projected object), on the informer's thread."""


def key_of(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def without_managed_fields(obj: Obj) -> Obj:
    """The object minus metadata.managedFields (often half its size and never read by the operator)."""
    meta = obj.get("metadata")
    if not meta or "managedFields" not in meta:
        return obj
    return {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


def newer(candidate: Obj, current: Obj | None) -> bool:
    """Is `candidate` at least as recent as `current`? resourceVersions are opaque, but etcd's are integers: when
    both are, the larger wins (a watch event older than a write we already remembered is ignored)."""
    if current is None:
        return True
    a = (candidate.get("metadata") or {}).get("resourceVersion")
    b = (current.get("metadata") or {}).get("resourceVersion")
    if isinstance(a, str) and isinstance(b, str) and a.isdigit() and b.isdigit():
        return int(a) >= int(b)
    return True


class Informer:
    """One kind, in one namespace or cluster-wide, optionally narrowed by labels (server-side)."""

    def __init__(
        self,
        kube: Kube,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        labels: dict[str, str] | None = None,
        project: Callable[[Obj], Obj] = without_managed_fields,
        on_change: OnChange | None = None,
        index: Callable[[Obj], Hashable | None] | None = None,
        watch_timeout_s: int = 300,
        retry_s: float = 1.0,
        fields: str | None = None,
    ) -> None:
        """`index`: a secondary key per object (e.g. its owner), for `indexed`. `fields`: a field selector (for
        kinds without our labels, e.g. the Events of one reason)."""
        self.kube, self.api_version, self.kind, self.namespace = kube, api_version, kind, namespace
        self.labels, self.project, self.on_change = labels or {}, project, on_change
        self.watch_timeout_s, self.retry_s, self.fields = watch_timeout_s, retry_s, fields
        self.synced = threading.Event()
        self.relists = 0
        self.reconnects = 0
        self.changes = 0
        """Bumped whenever the copy's content changes (not on events that leave the projection as it was, such as a
        node's heartbeat): readers may keep what they derived from it while this stays the same."""
        self._items: dict[Key, Obj] = {}
        self._index_fn = index
        self._index: dict[Hashable, dict[Key, Obj]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._response: Any = None
        self._thread: threading.Thread | None = None
        scope = namespace or "all namespaces"
        selectors = ",".join(s for s in (label_selector(self.labels), fields or "") if s)
        self.name = f"{kind} in {scope}" + (f" ({selectors})" if selectors else "")

    # --- reading ----------------------------------------------------------------------------------------------

    def get(self, namespace: str | None, name: str) -> Obj | None:
        with self._lock:
            return self._items.get((namespace or "", name))

    def indexed(self, value: Hashable) -> list[Obj]:
        """The objects whose `index` is `value`."""
        with self._lock:
            return list(self._index.get(value, {}).values())

    def remember(self, obj: Obj) -> None:
        """An object we just wrote (the API server's reply), so reads see it before its watch event arrives."""
        projected = self.project(obj)
        key = key_of(projected)
        with self._lock:
            previous = self._items.get(key)
            if newer(projected, previous):
                if previous is not None:
                    self._index_drop(key, previous)
                self._items[key] = projected
                self._index_add(key, projected)
                self.changes += 1

    def items(self) -> list[Obj]:
        with self._lock:
            return list(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    # --- running ----------------------------------------------------------------------------------------------

    def start(self) -> Informer:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"informer {self.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 10) -> None:
        self._stop.set()
        response = self._response
        if response is not None:  # unblock a read waiting on the server
            with contextlib.suppress(Exception):  # best effort; the read timeout ends it otherwise
                response.shutdown()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._relist()
                version = self._watch(version)
            except _Gone:
                version = None  # compacted past our version: start again from a LIST
            except Exception as exc:  # any failure: log, wait, resume from the last version
                if self._stop.is_set():
                    return
                self.reconnects += 1
                level = logging.DEBUG if isinstance(exc, TimeoutError | ConnectionError) else logging.WARNING
                log.log(level, "watch of %s failed, retrying in %.0f s: %s", self.name, self.retry_s, exc)
                self._stop.wait(self.retry_s)

    def _selectors(self) -> dict[str, str]:
        query = {"labelSelector": label_selector(self.labels)} if self.labels else {}
        if self.fields:
            query["fieldSelector"] = self.fields
        return query

    def _path(self) -> str:
        return resource_path(self.api_version, self.kind, self.namespace)

    def _relist(self) -> str:
        listed = self.kube.request("GET", self._path(), query=self._selectors() or None)
        fresh = {}
        for item in listed.get("items") or []:
            item.setdefault("apiVersion", self.api_version)
            item.setdefault("kind", self.kind)
            obj = self.project(item)
            fresh[key_of(obj)] = obj
        with self._lock:
            old, self._items = self._items, fresh
            if old != fresh:
                self.changes += 1
            self._index = {}
            for key, obj in fresh.items():
                self._index_add(key, obj)
        self.relists += 1
        if self.on_change is not None:
            for key, obj in fresh.items():
                if old.get(key) != obj:
                    self.on_change("ADDED" if key not in old else "MODIFIED", obj)
            for key, obj in old.items():
                if key not in fresh:
                    self.on_change("DELETED", obj)
        self.synced.set()
        return str((listed.get("metadata") or {}).get("resourceVersion") or "")

    def _watch(self, version: str) -> str:
        query = {
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self.watch_timeout_s),
        }
        query.update(self._selectors())
        for event in self._stream(query):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise _Gone()
                raise RuntimeError(f"watch error: {obj.get('message')}")
            meta = obj.get("metadata") or {}
            version = str(meta.get("resourceVersion") or version)
            if kind == "BOOKMARK":
                continue
            obj.setdefault("apiVersion", self.api_version)
            obj.setdefault("kind", self.kind)
            projected = self.project(obj)
            key = key_of(projected)
            with self._lock:
                previous = self._items.get(key)
                if kind != "DELETED" and not newer(projected, previous):
                    continue  # older than what a write of ours already put here
                if previous is not None:
                    del self._items[key]
                    self._index_drop(key, previous)
                if kind != "DELETED":
                    self._items[key] = projected
                    self._index_add(key, projected)
                if kind == "DELETED" or previous != projected:
                    self.changes += 1
            if self.on_change is not None and kind in ("ADDED", "MODIFIED", "DELETED"):
                self.on_change(str(kind), projected)
        return version

    def _index_add(self, key: Key, obj: Obj) -> None:
        if self._index_fn is not None and (value := self._index_fn(obj)) is not None:
            self._index.setdefault(value, {})[key] = obj

    def _index_drop(self, key: Key, obj: Obj) -> None:
        if self._index_fn is not None and (value := self._index_fn(obj)) is not None:
            bucket = self._index.get(value)
            if bucket is not None:
                bucket.pop(key, None)
                if not bucket:
                    del self._index[value]

    def _stream(self, query: dict[str, str]) -> Iterator[Obj]:
        """The watch response's events, one JSON document per line, until the server closes it."""
        api = self.kube.api
        path = self._path()
        url = self.kube.configuration.host + path + "?" + urlencode(query)
        headers = {"Accept": "application/json"}
        api.update_params_for_auth(headers, None, ["BearerToken"], path, "GET", None)
        try:
            rest = api.call_api("GET", url, header_params=headers, _request_timeout=(10.0, self.watch_timeout_s + 30.0))
        except ApiException as exc:
            raise ApiError(exc.status or 0, exc.reason or "", str(exc.body), f"WATCH {path}") from None
        response = rest.response  # urllib3's, not yet read: the events are read as they arrive
        if not 200 <= rest.status <= 299:
            body = response.data.decode(errors="replace")
            response.release_conn()
            if rest.status == 410:
                raise _Gone()
            raise ApiError(rest.status, rest.reason or "", body[:2000], f"WATCH {path}")
        self._response = response
        try:
            pending = b""
            for chunk in response.stream(64 * 1024, decode_content=False):
                if self._stop.is_set():
                    return
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
        finally:
            self._response = None
            response.release_conn()


class _Gone(Exception):
    """The server no longer has the version we watch from (HTTP 410): relist."""


def wait_synced(informers: list[Informer], timeout_s: float) -> None:
    """Block until every informer has listed once; raise naming the ones that have not."""
    deadline = time.monotonic() + timeout_s
    for informer in informers:
        if not informer.synced.wait(max(0.0, deadline - time.monotonic())):
            late = [i.name for i in informers if not i.synced.is_set()]
            raise TimeoutError(f"watches not listed within {timeout_s:.0f} s: {', '.join(late)}")
