"""docker-compose.yaml as docs/install.md tells a workstation user to run it, by the real Docker engine and Compose.

In a fresh project folder (the compose files, `.env` copied from .env.example, the token under `.secrets/`, `data/`
and `runs/` owned by UID 10001) with the documented no-GPU setting (COMPOSE_FILE=docker-compose.yaml): `up -d`
starts the dev image; JupyterLab answers only with its token, sshd lets in only the authorized key, `import torch`
works in the ssh session, and the data and output folders are the host's. `down -v` always runs at the end.

Compose v2 (`docker compose`) when the Docker CLI has it, else v1 (`docker-compose`, from scripts/bootstrap.sh).
This test builds (or reuses) only the dev image; it does not start the cluster of the `e2e` fixture.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, build_images
from ports import free_ports
from test_dev_image import get, keypair, ssh

pytestmark = pytest.mark.e2e

UID = 10001


def compose_tool(env: dict[str, str]) -> list[str]:
    v2 = subprocess.run(["docker", "compose", "version"], env=env, capture_output=True, text=True, check=False)
    if v2.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("missing Docker Compose: neither `docker compose` nor `docker-compose` (scripts/bootstrap.sh)")


def set_env(dotenv: Path, values: dict[str, str]) -> None:
    """Edit `KEY=value` lines of a .env as a user would, failing on a key the example does not have."""
    lines = dotenv.read_text().splitlines()
    for key, value in values.items():
        (index,) = [i for i, line in enumerate(lines) if line.startswith(f"{key}=")]
        lines[index] = f"{key}={value}"
    dotenv.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def compose_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    if os.environ.get("YOLO_SKIP_E2E") == "1":
        pytest.skip("YOLO_SKIP_E2E=1: the end-to-end suite (real images, real Docker engine) is skipped")
    docker_env = build_images("dev")
    # The project's .env decides, as it does for a user: no COMPOSE_* of the test runner's own environment.
    env = {key: value for key, value in docker_env.items() if not key.startswith("COMPOSE_")}
    tool = compose_tool(env)
    keys = tmp_path_factory.mktemp("keys")
    allowed, other = keypair(keys, "allowed"), keypair(keys, "other")
    allowed.with_suffix(".pub").chmod(0o644)
    project = tmp_path_factory.mktemp("checkout")
    project.chmod(0o755)
    # The documented steps: the compose files of a checkout, `cp .env.example .env`, the secrets and folders.
    for name in ("docker-compose.yaml", "docker-compose.gpu.yaml"):
        shutil.copy(ROOT / name, project / name)
    shutil.copy(ROOT / ".env.example", project / ".env")
    (project / ".secrets").mkdir(mode=0o700)
    token = secrets.token_hex(32)
    (project / ".secrets" / "jupyter-token").write_text(token + "\n")
    (project / ".secrets" / "jupyter-token").chmod(0o644)
    for folder in ("data", "runs"):
        (project / folder).mkdir()
        os.chown(project / folder, UID, UID)
    (project / "data" / "from-host.txt").write_text("written on the host\n")
    jupyter_port, ssh_port = free_ports(2)
    name = f"yolo-dev-compose-e2e-{secrets.token_hex(3)}"
    set_env(
        project / ".env",
        {
            "COMPOSE_FILE": "docker-compose.yaml",  # the documented setting where no NVIDIA GPU is present
            "COMPOSE_PROJECT_NAME": name,
            "YOLO_DEV_AUTHORIZED_KEYS_FILE": str(allowed.with_suffix(".pub")),
            "YOLO_DEV_JUPYTER_PORT": str(jupyter_port),
            "YOLO_DEV_SSH_PORT": str(ssh_port),
        },
    )

    def compose(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*tool, *args], cwd=project, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )

    try:
        up = compose("up", "-d")
        assert up.returncode == 0, f"{' '.join(tool)} up -d failed (rc {up.returncode}): {up.stderr[-3000:]}"
        deadline = time.monotonic() + 240
        while get(f"http://127.0.0.1:{jupyter_port}/api") != 200:
            assert time.monotonic() < deadline, compose("logs", "--no-color").stdout[-3000:]
            time.sleep(1)
        container = compose("ps", "-q", "dev").stdout.strip()
        yield {"token": token, "jupyter": jupyter_port, "ssh": ssh_port, "allowed": allowed, "other": other,
               "project": project, "container": container, "env": env}  # fmt: skip
    finally:
        down = compose("down", "-v")
        assert down.returncode == 0, down.stderr[-3000:]


def test_compose_jupyter_answers_only_with_its_token(compose_dev: dict[str, object]) -> None:
    url = f"http://127.0.0.1:{compose_dev['jupyter']}/api/contents"
    assert get(url) == 403
    assert get(url, {"Authorization": "token not-the-token-0123456789"}) == 403
    assert get(url, {"Authorization": f"token {compose_dev['token']}"}) == 200
    # The token reaches the container as a secret file, never in its configuration or environment.
    env = compose_dev["env"]
    assert isinstance(env, dict)
    inspect = subprocess.run(["docker", "inspect", str(compose_dev["container"])], env=env, capture_output=True,
                             text=True, check=True)  # fmt: skip
    assert str(compose_dev["token"]) not in inspect.stdout
    (host,) = [item["HostConfig"] for item in json.loads(inspect.stdout)]
    assert host["CapDrop"] == ["ALL"] and not host["DeviceRequests"], "no GPU is reserved without the override"


def test_compose_ssh_takes_only_the_key_and_sees_torch_and_the_mounted_folders(compose_dev: dict[str, object]) -> None:
    port = int(str(compose_dev["ssh"]))
    project = Path(str(compose_dev["project"]))
    inside = ssh(
        Path(str(compose_dev["allowed"])),
        port,
        "python -c 'import torch; print(torch.__version__)' && cat /workspace/data/from-host.txt"
        " && echo from the container > /workspace/runs/from-container.txt",
    )
    assert inside.returncode == 0, inside.stderr[-2000:]
    lines = inside.stdout.strip().splitlines()
    assert lines[0].startswith("2.") and lines[-1] == "written on the host", inside.stdout
    written = project / "runs" / "from-container.txt"
    assert written.read_text() == "from the container\n" and written.stat().st_uid == UID
    refused = ssh(Path(str(compose_dev["other"])), port, "true")
    assert refused.returncode == 255 and "Permission denied" in refused.stderr, refused.stderr
