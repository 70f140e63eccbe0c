#!/usr/bin/env bash
# Sets up everything the project needs on a fresh Debian machine, idempotently:
#   - Debian packages: prometheus (promtool and the server, for the monitoring tests), openssh-server; for the
#     images and the e2e suite's real node: docker.io (with containerd and runc), debootstrap, the CNI plugins,
#     iptables and conntrack (kube-proxy), gcc (the pause program); docker-compose (Compose v1, for the dev
#     environment test of docker-compose.yaml);
#   - a Python virtual environment built from requirements.lock, cached outside the repository and keyed by the
#     lock's hash and the Python version (PyTorch is large: the second run reuses it in seconds);
#   - this checkout installed into it (editable), and .venv pointing at it.
# The Go-built control plane is built separately by tests/cluster/controlplane/build.sh (`make cluster-bin`).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${YOLO_OPERATOR_CACHE:-$HOME/.cache/yolo-operator}"
python="${PYTHON:-python3}"
log() { printf '[bootstrap] %s\n' "$*" >&2; }

apt_packages=(prometheus openssh-server openssh-client docker.io containerd runc debootstrap
  containernetworking-plugins iptables conntrack iproute2 gcc libc6-dev docker-compose)
# shellcheck source=scripts/debian.sh
source "$root/scripts/debian.sh"
if [[ -n $(debian_missing "${apt_packages[@]}") ]]; then
  if ensure_debian_packages bootstrap "${apt_packages[@]}"; then
    # The prometheus package starts services on install; the tests start their own on loopback.
    # So do docker.io's: make images starts its own engine on its own socket and data root.
    for svc in prometheus prometheus-node-exporter ssh docker containerd; do
      service "$svc" stop >/dev/null 2>&1 || true
    done
  elif [[ $(id -u) -eq 0 ]]; then
    exit 1  # an install that failed as root is an error; as a user, the missing packages were named above
  fi
fi

key="$( (cat "$root/requirements.lock"; "$python" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-16)"
venv="$cache/venv-$key"
if [[ ! -f "$venv/.complete" ]]; then
  log "creating $venv from requirements.lock (PyTorch is large: minutes the first time, cached after)"
  rm -rf "$venv"  # an interrupted build has no .complete marker: start it over
  mkdir -p "$cache"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >&2
  "$venv/bin/pip" install -q -r "$root/requirements.lock" >&2
  touch "$venv/.complete"
fi
log "installing this checkout into $venv"
"$venv/bin/pip" install -q --no-deps -e "$root" >&2
ln -sfn "$venv" "$root/.venv"
log "ready: $root/.venv -> $venv"
