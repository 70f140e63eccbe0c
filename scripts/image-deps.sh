#!/bin/sh
# Runs inside the image build stages, so that editing code or tool settings never re-runs the large dependency
# install (PyTorch alone is gigabytes):
#   image-deps spec DIR           writes DIR/operator.txt and DIR/workloads.txt: the dependency lists of
#                                 pyproject.toml (the one place they are written) and its build backend
#   image-deps install VENV FILE  installs FILE's requirements into VENV, pinned by ./requirements.lock; for the
#                                 workloads, swaps OpenCV for its headless build of the same version
# The install layer's cache key is then the dependency list and the lock, not all of pyproject.toml.
set -eu
if [ "$1" = spec ]; then
  mkdir -p "$2"
  python3 - "$2" <<'PY'
import pathlib
import sys
import tomllib

pyproject = tomllib.load(open("pyproject.toml", "rb"))
project = pyproject["project"]
# The build backend too: the sources are installed later with --no-build-isolation (no network needed then).
base = list(pyproject["build-system"]["requires"]) + list(project["dependencies"])
out = pathlib.Path(sys.argv[1])
(out / "operator.txt").write_text("\n".join(base) + "\n")
(out / "workloads.txt").write_text("\n".join(base + project["optional-dependencies"]["workloads"]) + "\n")
PY
  exit 0
fi
[ "$1" = install ] || { echo "usage: image-deps spec DIR | image-deps install VENV FILE" >&2; exit 2; }
venv="$2"
deps="$3"
# A TLS-intercepting proxy's CA (copied in by `make images`), for this build step only.
if [ -s /tmp/build-ca/ca.pem ]; then
  export PIP_CERT=/tmp/build-ca/ca.pem SSL_CERT_FILE=/tmp/build-ca/ca.pem
fi
"$venv/bin/pip" install --constraint requirements.lock --requirement "$deps"
if grep -q '^ultralytics' "$deps"; then
  # Ultralytics requires opencv-python (the GUI build); a server wants the headless build of the same version.
  opencv_version="$(sed -n 's/^opencv-python==//p' requirements.lock)"
  test -n "$opencv_version"
  "$venv/bin/pip" uninstall --yes opencv-python
  "$venv/bin/pip" install --no-deps "opencv-python-headless==$opencv_version"
fi
# Consistent, but for the one requirement swapped on purpose above.
if ! problems="$("$venv/bin/pip" check)"; then
  problems="$(printf '%s\n' "$problems" | grep -v 'requires opencv-python, which is not installed' || true)"
  if [ -n "$problems" ]; then
    printf '%s\n' "$problems" >&2
    exit 1
  fi
fi
