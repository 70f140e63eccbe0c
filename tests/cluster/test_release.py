"""Issue 20: `make release VERSION=x.y.z` (scripts/release.sh) on a copy of this checkout, with the real kubectl and
helm: the version is written from pyproject.toml into every derived file, and the install YAML, the packaged chart,
the Argo CD snippet and their checksums come out for that version. The checkout itself is never touched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from .gitops import tool
from .harness import build_binaries

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
VERSION = "9.8.7"


def copy_checkout(dest: Path) -> None:
    """Tracked and untracked-but-not-ignored files, links kept (the chart's files/ are links)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src, dst = REPO / rel, dest / rel
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the working tree
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, dst)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("release") / "repo"
    copy_checkout(root)
    yield root


def release(root: Path, version: str, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECTL": str(build_binaries() / "kubectl"), "HELM": str(tool("helm"))}
    return subprocess.run(
        ["bash", "scripts/release.sh", version, str(out)], cwd=root, env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip


def test_a_release_needs_its_changelog_section(checkout: Path, tmp_path: Path) -> None:
    proc = release(checkout, "9.9.9", tmp_path / "out")
    assert proc.returncode != 0 and "CHANGELOG.md has no '## [9.9.9]' section" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_make_release_writes_the_version_and_the_artefacts(checkout: Path, tmp_path: Path) -> None:
    changelog = checkout / "CHANGELOG.md"
    changelog.write_text(changelog.read_text().replace("## [", f"## [{VERSION}]\n\n- test\n\n## [", 1))
    out = tmp_path / "dist"
    proc = release(checkout, VERSION, out)
    assert proc.returncode == 0, proc.stderr
    check = subprocess.run(
        ["python3", "scripts/version.py", "--check"], cwd=checkout, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr
    assert f'version = "{VERSION}"' in (checkout / "pyproject.toml").read_text()

    names = [f"yolo-operator-{VERSION}.yaml", f"yolo-operator-monitoring-{VERSION}.yaml",
             f"yolo-operator-{VERSION}.tgz", f"argocd-cm-health-{VERSION}.yaml"]  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, "SHA256SUMS"])
    sums = dict(reversed(line.split()) for line in (out / "SHA256SUMS").read_text().splitlines())
    for name in names:
        assert sums[name] == hashlib.sha256((out / name).read_bytes()).hexdigest(), name

    docs = [d for d in yaml.safe_load_all((out / names[0]).read_text()) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"ghcr.io/yolo-operator/yolo-operator:{VERSION}"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["YOLO_OPERATOR_DEFAULT_IMAGE"] == f"ghcr.io/yolo-operator/yolo-workload:{VERSION}"
    assert {"CustomResourceDefinition", "ClusterRole", "Namespace"} <= {d["kind"] for d in docs}
    monitoring = {d["kind"] for d in yaml.safe_load_all((out / names[1]).read_text()) if d}
    assert {"ServiceMonitor", "PodMonitor", "PrometheusRule"} <= monitoring

    with tarfile.open(out / names[2]) as chart:
        meta = yaml.safe_load(chart.extractfile("yolo-operator/Chart.yaml").read())  # type: ignore[union-attr]
        members = chart.getnames()
    assert (meta["version"], meta["appVersion"]) == (VERSION, VERSION)
    assert "yolo-operator/files/crds/yolo-operator.io_yolotrainjobs.yaml" in members  # links stored as files
    rendered = subprocess.run(
        [str(tool("helm")), "template", "yolo-operator", str(out / names[2]), "-n", "yolo-operator-system"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"image: ghcr.io/yolo-operator/yolo-operator:{VERSION}" in rendered
