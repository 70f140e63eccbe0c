"""An informer whose watch version the server no longer has (etcd compacted it: the server sends an ERROR event
with code 410) lists again and goes on from the new list. A real API server answers a stale version this way only
after a compaction, which a test cannot trigger on demand, so a small HTTP server speaks that part of the protocol."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client as k8s_client
from yolo_operator.k8s.client import Kube
from yolo_operator.runtime.informer import Informer

pytestmark = pytest.mark.unit


def cm(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": version}, "data": {}}


class ApiServer(BaseHTTPRequestHandler):
    lists: list[dict[str, Any]] = []
    watch_versions: list[str] = []

    def log_message(self, *_: Any) -> None:
        pass

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        query = parse_qs(urlparse(self.path).query)
        if query.get("watch") == ["true"]:
            version = query["resourceVersion"][0]
            self.watch_versions.append(version)
            if version == "10":  # the first list's version: compacted away
                gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"}
                self._send(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
            else:  # from the second list on: one change, then the server ends the watch
                self._send(json.dumps({"type": "MODIFIED", "object": cm("b", "21")}).encode() + b"\n")
            return
        listed = self.lists.pop(0) if len(self.lists) > 1 else self.lists[0]
        self._send(json.dumps(listed).encode())


@pytest.fixture
def server() -> Iterator[str]:
    ApiServer.lists = [
        {"metadata": {"resourceVersion": "10"}, "items": [cm("a", "5")]},
        {"metadata": {"resourceVersion": "20"}, "items": [cm("b", "20")]},
    ]
    ApiServer.watch_versions = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ApiServer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_a_410_relists_and_resumes_from_the_new_version(server: str) -> None:
    configuration = k8s_client.Configuration()
    configuration.host = server
    kube = Kube(k8s_client.ApiClient(configuration))
    changes: list[tuple[str, str]] = []
    informer = Informer(
        kube, "v1", "ConfigMap", "ns", on_change=lambda kind, o: changes.append((kind, o["metadata"]["name"])),
        retry_s=0.01,
    )  # fmt: skip
    informer.start()
    try:
        deadline = threading.Event()
        for _ in range(500):
            # the relist's cache entry comes before the watch's event: wait for the event too (a busy CI machine
            # took longer than this loop's first check to deliver it)
            if "20" in ApiServer.watch_versions and ("MODIFIED", "b") in changes:
                break
            deadline.wait(0.01)
    finally:
        informer.stop()
        kube.close()
    assert ApiServer.watch_versions[:2] == ["10", "20"]  # the stale version, then the new list's
    assert informer.relists >= 2
    assert informer.get("ns", "a") is None  # gone from the second list: dropped, and the hook heard it
    assert ("DELETED", "a") in changes and ("ADDED", "b") in changes
    assert ("MODIFIED", "b") in changes
