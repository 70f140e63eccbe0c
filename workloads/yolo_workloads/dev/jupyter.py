"""JupyterLab with a required token that comes from a Secret and never reaches a log or a command line.

The token is handed to Jupyter through its `JUPYTER_TOKEN` environment variable (a command-line flag would show
in `ps` and in the pod spec). An empty or short token is refused before anything starts: Jupyter would otherwise
run without authentication or generate a token and print it in its log.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from yolo_workloads.dev.sshd import DevSetupError

MIN_TOKEN_LENGTH = 16
TOKEN_ENV = "JUPYTER_TOKEN"
TOKEN_FILE_ENV = "YOLO_DEV_JUPYTER_TOKEN_FILE"


@dataclass(frozen=True)
class JupyterSettings:
    state_dir: Path
    root_dir: Path
    port: int = 8888
    ip: str = "0.0.0.0"
    base_url: str = "/"


def read_token(token_file: str | None, environ: dict[str, str] | None = None) -> str:
    """The token from `token_file` (a mounted Secret key) or else `$JUPYTER_TOKEN`; refuse empty or short ones."""
    env = os.environ if environ is None else environ
    source: str
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise DevSetupError(f"Jupyter token file {token_file}: cannot read it ({exc.strerror})") from exc
        source = f"token file {token_file}"
    else:
        token = env.get(TOKEN_ENV, "").strip()
        source = f"${TOKEN_ENV}"
    if not token:
        raise DevSetupError(
            f"Jupyter token is empty ({source}): refusing to start JupyterLab without authentication; "
            f"set {TOKEN_ENV} or mount a Secret and pass --jupyter-token-file / ${TOKEN_FILE_ENV}"
        )
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise DevSetupError(
            f"Jupyter token from {source} is too weak: use at least {MIN_TOKEN_LENGTH} characters without "
            "spaces (e.g. `openssl rand -hex 32`)"
        )
    return token


def find_jupyter_lab() -> str:
    for candidate in (shutil.which("jupyter-lab"), "/opt/venv/bin/jupyter-lab"):
        if candidate and Path(candidate).is_file():
            return candidate
    raise DevSetupError("jupyter-lab not found: it ships in the `dev` image target (pip install jupyterlab)")


def command(settings: JupyterSettings, executable: str) -> list[str]:
    """The JupyterLab command line: no secrets on it, authentication mandatory, no browser, no root."""
    return [
        executable,
        "--no-browser",
        f"--ServerApp.ip={settings.ip}",
        f"--ServerApp.port={settings.port}",
        "--ServerApp.port_retries=0",  # a busy port is an error, not a silent move to another one
        f"--ServerApp.root_dir={settings.root_dir}",
        f"--ServerApp.base_url={settings.base_url}",
        "--ServerApp.allow_root=False",
        "--ServerApp.allow_remote_access=True",
        "--ServerApp.allow_unauthenticated_access=False",
        "--ServerApp.password=",
        "--PasswordIdentityProvider.allow_password_change=False",
    ]


def environment(settings: JupyterSettings, token: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: the token, and Jupyter's runtime files in our private state folder."""
    env = dict(os.environ if base is None else base)
    env.pop(TOKEN_FILE_ENV, None)
    env[TOKEN_ENV] = token
    env["JUPYTER_RUNTIME_DIR"] = str(settings.state_dir / "runtime")
    env["JUPYTER_CONFIG_DIR"] = str(settings.state_dir / "config")
    return env


def prepare(settings: JupyterSettings) -> None:
    for sub in ("runtime", "config"):
        (settings.state_dir / sub).mkdir(parents=True, exist_ok=True)
    settings.state_dir.chmod(0o700)
    if not settings.root_dir.is_dir():
        raise DevSetupError(f"--workspace {settings.root_dir}: no such folder (mount the data/output volumes)")
