"""The project's version lives in one place, pyproject.toml's `[project] version`; every other file that names it
(images' tags, the chart, the package constants) is written from it here.

    python3 scripts/version.py                 # print the version
    python3 scripts/version.py --check         # exit 1, naming each file, when one disagrees
    python3 scripts/version.py --set X.Y.Z     # write X.Y.Z into pyproject.toml and every derived place

Standard library only: `make release` runs it before any environment exists.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$")
SOURCE = ("pyproject.toml", r'(?m)^(version = ")([^"]+)(")')
DERIVED = (
    ("operator/yolo_operator/__init__.py", r'(?m)^(__version__ = ")([^"]+)(")'),
    ("workloads/yolo_workloads/__init__.py", r'(?m)^(__version__ = ")([^"]+)(")'),
    ("operator/yolo_operator/render/common.py", r'(DEFAULT_IMAGE = "ghcr.io/yolo-operator/yolo-workload:)([^"]+)(")'),
    ("manifests/base/deployment.yaml", r"(image: ghcr.io/yolo-operator/yolo-operator:)(\S+)()"),
    ("manifests/base/deployment.yaml", r"(value: ghcr.io/yolo-operator/yolo-workload:)(\S+)()"),
    ("manifests/default/kustomization.yaml", r"(newTag: )(\S+)()"),
    ("manifests/samples/dev/dev.yaml", r"(image: ghcr.io/yolo-operator/yolo-workload-dev:)(\S+)()"),
    ("charts/yolo-operator/Chart.yaml", r"(?m)^(version: )(\S+)()"),
    ("charts/yolo-operator/Chart.yaml", r'(?m)^(appVersion: ")([^"]+)(")'),
    ("Dockerfile", r"(?m)^(ARG VERSION=)(\S+)()"),
    ("docker-compose.yaml", r"(ghcr.io/yolo-operator/yolo-workload-dev:)([^}\s]+)()"),
    (".env.example", r"(ghcr.io/yolo-operator/yolo-workload-dev:)(\S+)()"),
)


def current() -> str:
    path, pattern = SOURCE
    match = re.search(pattern, (ROOT / path).read_text())
    if match is None:
        sys.exit(f"{path}: no version line")
    return match.group(2)


def found(path: str, pattern: str) -> list[str]:
    values = [m.group(2) for m in re.finditer(pattern, (ROOT / path).read_text())]
    if not values:
        sys.exit(f"{path}: the pattern {pattern!r} matches nothing; update scripts/version.py")
    return values


def check() -> int:
    version = current()
    wrong = [f"{p}: {v} (pyproject.toml says {version})" for p, pat in DERIVED for v in found(p, pat) if v != version]
    for line in wrong:
        print(line, file=sys.stderr)
    if wrong:
        print("run: python3 scripts/version.py --set " + version, file=sys.stderr)
    return 1 if wrong else 0


def write(version: str) -> None:
    if not SEMVER.match(version):
        sys.exit(f"{version!r} is not a semantic version (X.Y.Z)")
    for path, pattern in (SOURCE, *DERIVED):
        found(path, pattern)
        file = ROOT / path
        file.write_text(re.sub(pattern, lambda m: m.group(1) + version + m.group(3), file.read_text()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--set", metavar="VERSION")
    args = parser.parse_args()
    if args.set:
        write(args.set)
        return check()
    if args.check:
        return check()
    print(current())
    return 0


if __name__ == "__main__":
    sys.exit(main())
