"""Real servers on loopback for the remote-source tests: MinIO (a real S3 implementation, built from the Go module
proxy by tests/servers/build-minio.sh) and an HTTPS server with its own certificate authority (made with openssl).

The S3 helpers sign their own requests with the project's SigV4 code; MinIO checks every signature, so a test that
uploads through them also proves the signing. The HTTPS server counts requests per path (a cache hit must send
none) and has misbehaving paths: `/truncated/...` announces a Content-Length and closes half-way, `/forbidden/...`
answers 403, `/noetag/...` sends no validator, `/redirect/...` sends a 302 to `/files/...`.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import ssl
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import urllib3
from yolo_workloads.fetch.sigv4 import Credentials, sign, uri_encode

REPO = Path(__file__).resolve().parents[2]
BUILD_MINIO = REPO / "tests" / "servers" / "build-minio.sh"
ACCESS_KEY = "yolo-test-admin"
SECRET_KEY = "yolo-test-secret-key"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# --- a certificate authority --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: Path
    key: Path


def make_ca(folder: Path, host: str = "127.0.0.1") -> Tls:
    """A throw-away CA and a server certificate for `host` (and localhost) signed by it."""
    folder.mkdir(parents=True, exist_ok=True)

    def ssl_tool(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    ssl_tool("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=yolo-operator test CA")  # fmt: skip
    ssl_tool("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj",
             f"/CN={host}")  # fmt: skip
    (folder / "ext.cnf").write_text(
        f"subjectAltName=IP:{host},IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    ssl_tool("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
             "server.crt", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip
    return Tls(folder / "ca.crt", folder / "server.crt", folder / "server.key")


# --- MinIO ----------------------------------------------------------------------------------------------------------


def minio_binary() -> Path:
    """The cached MinIO binary (built once by the set-up step; a no-op here when it is there)."""
    out = subprocess.run(["bash", str(BUILD_MINIO)], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


@dataclass
class Minio:
    endpoint: str
    process: subprocess.Popen[bytes]
    ca: Path | None = None
    pool: urllib3.PoolManager = field(default_factory=urllib3.PoolManager)

    def request(self, method: str, path: str, body: bytes = b"", creds: Credentials | None = None) -> int:
        """A signed S3 request (admin credentials unless others are given); returns the status."""
        creds = creds or Credentials(ACCESS_KEY, SECRET_KEY)
        host = urlsplit(self.endpoint).netloc
        headers = sign(method, host, path, {}, creds, "us-east-1", datetime.now(UTC), hashlib.sha256(body).hexdigest())
        response = self.pool.request(method, self.endpoint + uri_encode(path, True), body=body, headers=headers)
        return int(response.status)

    def bucket(self, name: str) -> None:
        status = self.request("PUT", f"/{name}")
        assert status in (200, 409), status

    def put(self, bucket: str, key: str, data: bytes) -> None:
        status = self.request("PUT", f"/{bucket}/{key}", data)
        assert status == 200, status

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_minio(data_dir: Path, tls: Tls | None = None, host: str = "127.0.0.1") -> Minio:
    """MinIO on a free port of `host` (loopback; the e2e suite's pod bridge), one drive in `data_dir`, update
    checks off; waits until it answers."""
    binary = minio_binary()
    port, console = free_port(host), free_port()
    args = [str(binary), "server", str(data_dir / "drive"), "--address", f"{host}:{port}",
            "--console-address", f"127.0.0.1:{console}"]  # fmt: skip
    scheme, pool = "http", urllib3.PoolManager()
    if tls is not None:
        certs = data_dir / "certs"
        certs.mkdir(parents=True, exist_ok=True)
        (certs / "public.crt").write_bytes(tls.cert.read_bytes())
        (certs / "private.key").write_bytes(tls.key.read_bytes())
        args += ["--certs-dir", str(certs)]
        scheme, pool = "https", urllib3.PoolManager(ca_certs=str(tls.ca))
    env = {**os.environ, "MINIO_ROOT_USER": ACCESS_KEY, "MINIO_ROOT_PASSWORD": SECRET_KEY, "MINIO_BROWSER": "off",
           "MINIO_UPDATE": "off", "MINIO_CALLHOME_ENABLE": "off"}  # fmt: skip
    log = (data_dir / "minio.log").open("wb")
    process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Minio(f"{scheme}://{host}:{port}", process, tls.ca if tls else None, pool)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"minio exited with {process.returncode}: {(data_dir / 'minio.log').read_text()[-2000:]}"
            )
        try:
            if pool.request("GET", f"{server.endpoint}/minio/health/live", retries=False, timeout=2).status == 200:
                return server
        except urllib3.exceptions.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError("minio did not answer within 60 s")


# --- HTTPS ----------------------------------------------------------------------------------------------------------


class FileServer(http.server.ThreadingHTTPServer):
    files: dict[str, bytes]
    hits: Counter[str]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FileServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self.server.hits[self.path] += 1
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        kind, _, name = self.path.lstrip("/").partition("/")
        if kind == "redirect":
            self.send_response(302)
            self.send_header("Location", f"/files/{name}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = self.server.files.get(name)
        if kind == "forbidden" or data is None:
            self.send_response(403 if kind == "forbidden" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        if kind == "rangeless":  # announces byte ranges, then answers every request whole
            self.send_header("Accept-Ranges", "bytes")
        if kind != "noetag":
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()[:32]}"')
        self.end_headers()
        if not body:
            return
        if kind == "truncated":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(data)


@dataclass
class Https:
    url: str
    server: FileServer
    thread: threading.Thread

    @property
    def files(self) -> dict[str, bytes]:
        return self.server.files

    @property
    def hits(self) -> Counter[str]:
        return self.server.hits

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_https(tls: Tls, host: str = "127.0.0.1") -> Https:
    server = FileServer((host, 0), _Handler)
    server.files, server.hits = {}, Counter()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tls.cert), str(tls.key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return Https(f"https://{host}:{server.server_address[1]}", server, thread)
