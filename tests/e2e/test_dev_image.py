"""The dev image as docs/install.md describes it, run by the real Docker engine: JupyterLab answers only with its
token, sshd lets in only the authorized key, and the image's Python (with torch) is on the ssh session's PATH."""

from __future__ import annotations

import secrets
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DEV_IMAGE, E2E, build_images
from ports import free_ports

pytestmark = pytest.mark.e2e


def keypair(folder: Path, name: str) -> Path:
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def get(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:  # not listening yet: Docker's proxy accepts, then resets
        return 0


def ssh(key: Path, port: int, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-i", str(key), "-p", str(port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10",
         "yolo@127.0.0.1", command],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def dev(e2e: E2E, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    build_images("dev")
    folder = tmp_path_factory.mktemp("dev")
    folder.chmod(0o755)
    token = secrets.token_hex(16)
    (folder / "token").write_text(token)
    allowed = keypair(folder, "allowed")
    other = keypair(folder, "other")
    (folder / "authorized_keys").write_text(allowed.with_suffix(".pub").read_text())
    for name in ("token", "authorized_keys"):
        (folder / name).chmod(0o644)
    jupyter_port, ssh_port = free_ports(2)
    name = f"yolo-dev-e2e-{secrets.token_hex(3)}"
    e2e.docker(
        "run", "-d", "--rm", "--name", name, "--user", "10001:10001", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges:true",
        "-e", "YOLO_DEV_JUPYTER_TOKEN_FILE=/run/secrets/jupyter_token",
        "-e", "YOLO_DEV_AUTHORIZED_KEYS=/run/secrets/authorized_keys",
        "-v", f"{folder / 'token'}:/run/secrets/jupyter_token:ro",
        "-v", f"{folder / 'authorized_keys'}:/run/secrets/authorized_keys:ro",
        "-p", f"127.0.0.1:{jupyter_port}:8888", "-p", f"127.0.0.1:{ssh_port}:2222",
        DEV_IMAGE, "dev",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while get(f"http://127.0.0.1:{jupyter_port}/api") != 200:
            assert time.monotonic() < deadline, e2e.docker("logs", name, check=False).stderr[-3000:]
            time.sleep(1)
        yield {"token": token, "jupyter": jupyter_port, "ssh": ssh_port, "allowed": allowed, "other": other,
               "name": name}  # fmt: skip
    finally:
        e2e.docker("rm", "-f", name, check=False)


def test_jupyter_refuses_requests_without_the_token(dev: dict[str, object]) -> None:
    url = f"http://127.0.0.1:{dev['jupyter']}/api/contents"
    assert get(url) == 403
    assert get(url, {"Authorization": "token not-the-token"}) == 403
    assert get(url, {"Authorization": f"token {dev['token']}"}) == 200


def test_ssh_lets_in_only_the_authorized_key_with_the_images_python(dev: dict[str, object]) -> None:
    port = int(str(dev["ssh"]))
    inside = ssh(Path(str(dev["allowed"])), port,
                 "echo offline=$YOLO_OFFLINE; python -c 'import torch, ultralytics; print(torch.__version__)'")  # fmt: skip
    assert inside.returncode == 0, inside.stderr[-2000:]
    lines = inside.stdout.strip().splitlines()
    assert lines[0] == "offline=1" and lines[-1].startswith("2."), inside.stdout
    refused = ssh(Path(str(dev["other"])), port, "true")
    assert refused.returncode == 255 and "Permission denied" in refused.stderr, refused.stderr
