#!/usr/bin/env bash
# `make images`: builds the operator, workload and dev images with a real Docker engine, also on a machine where no
# image registry can be reached.
#   - uses the engine at DOCKER_HOST (or the default socket) when one answers; otherwise installs Debian's docker.io
#     (as root) and starts dockerd on its own socket and data root under the cache, so the layer cache survives;
#   - pulls the Dockerfile's real bases when a registry answers; otherwise builds a Debian bookworm base with
#     python3 from Debian's packages (debootstrap), once, cached as an image;
#   - passes the host's CA bundle to the build stages (TLS-intercepting proxies), never into a final image.
# Tags: ghcr.io/yolo-operator/{yolo-operator,yolo-workload,yolo-workload-dev}:<version from pyproject.toml>, the
# names the install manifests use. Prints `export DOCKER_HOST=...` as its last line of stdout.
#
# Usage: bash scripts/images.sh [operator] [workload] [dev]     (default: all three)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${YOLO_OPERATOR_CACHE:-$HOME/.cache/yolo-operator}"
# shellcheck source=scripts/engine.sh
source "$root/scripts/engine.sh"
log() { printf '[images] %s\n' "$*" >&2; }

targets=("$@")
((${#targets[@]})) || targets=(operator workload dev)
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/pyproject.toml" | head -n 1)"
registry="${YOLO_IMAGE_REGISTRY:-ghcr.io/yolo-operator}"
declare -A image_name=([operator]=yolo-operator [workload]=yolo-workload [dev]=yolo-workload-dev)

ensure_engine

# --- bases ---------------------------------------------------------------------------------------------------
dockerfile_default() { sed -n "s/^ARG $1=//p" "$root/Dockerfile" | head -n 1; }
debian_base="yolo-operator/debian-python:bookworm"

build_debian_base() {
  if docker image inspect "$debian_base" >/dev/null 2>&1; then return; fi
  ensure_debian_packages images debootstrap
  local rootfs started=$SECONDS
  rootfs="$(mktemp -d "$cache/debootstrap.XXXXXX")"
  log "building $debian_base from Debian's packages (debootstrap, a few minutes, once)"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" \
    "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$cache/debootstrap.log" 2>&1 \
    || { log "debootstrap failed: see $cache/debootstrap.log"; rm -rf "$rootfs"; exit 1; }
  cat >"$rootfs/etc/apt/sources.list" <<EOF
deb ${DEBIAN_MIRROR:-http://deb.debian.org/debian} bookworm main
deb ${DEBIAN_MIRROR:-http://deb.debian.org/debian} bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' - "$debian_base" >/dev/null
  rm -rf "$rootfs"
  log "built $debian_base in $((SECONDS - started)) s"
}

# The configured base if it is here or can be pulled, else the Debian base.
pick_base() {
  local wanted="$1"
  if docker image inspect "$wanted" >/dev/null 2>&1 || timeout 60 docker pull -q "$wanted" >/dev/null 2>&1; then
    echo "$wanted"
  else
    log "cannot pull $wanted (no registry reachable?): using $debian_base, built from Debian's packages"
    build_debian_base
    echo "$debian_base"
  fi
}
python_base="$(pick_base "${PYTHON_IMAGE:-$(dockerfile_default PYTHON_IMAGE)}")"
needs_cuda=0
for t in "${targets[@]}"; do [[ $t == operator ]] || needs_cuda=1; done
cuda_base="$python_base"
((needs_cuda)) && cuda_base="$(pick_base "${CUDA_IMAGE:-$(dockerfile_default CUDA_IMAGE)}")"

# --- CA bundle for proxies -------------------------------------------------------------------------------------
ca_dir="$root/.build-ca"
ca_source="${YOLO_BUILD_CA_FILE:-$(python3 -c 'import ssl; print(ssl.get_default_verify_paths().cafile or "")' 2>/dev/null)}"
if [[ -n $ca_source && -s $ca_source ]]; then
  cmp -s "$ca_source" "$ca_dir/ca.pem" || cp "$ca_source" "$ca_dir/ca.pem"
else
  rm -f "$ca_dir/ca.pem"
fi

# --- build ---------------------------------------------------------------------------------------------------
revision="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
# The commit's time, not now: an unchanged tree rebuilds to the same image ID (nothing to re-load into a node).
created="$(git -C "$root" log -1 --format=%cI 2>/dev/null || echo unknown)"
build() {  # build TARGET TAG LOG
  # The legacy builder: Debian's docker.io has no buildx, and BuildKit would try to pull its frontend image.
  DOCKER_BUILDKIT=0 docker build -q --target "$1" -t "$2" \
    --build-arg "PYTHON_IMAGE=$python_base" --build-arg "CUDA_IMAGE=$cuda_base" \
    --build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "CREATED=$created" \
    "$root" >"$3" 2>&1 || { tail -n 40 "$3" >&2; log "building $2 failed: $3"; exit 1; }
}

# The build stages are tagged too (yolo-operator/build-cache:STAGE): their layers are the expensive cache (the
# locked dependencies), and tagged they survive the prune below, which removes whatever an earlier build left.
declare -A stages=([operator]="deps-spec operator-build" [workload]="deps-spec workload-deps"
                   [dev]="deps-spec workload-deps")
declare -A built_stage=()
for target in "${targets[@]}"; do
  [[ -n ${image_name[$target]:-} ]] || { log "unknown target $target (operator, workload, dev)"; exit 2; }
  for stage in ${stages[$target]}; do
    [[ -n ${built_stage[$stage]:-} ]] && continue
    started=$SECONDS
    build "$stage" "yolo-operator/build-cache:$stage" "$cache/build-$stage.log"
    built_stage[$stage]=1
    ((SECONDS - started < 5)) || log "built stage $stage in $((SECONDS - started)) s"
  done
  tag="$registry/${image_name[$target]}:$version"
  started=$SECONDS
  log "building $tag (target $target)"
  build "$target" "$tag" "$cache/build-$target.log"
  size="$(docker image inspect -f '{{.Size}}' "$tag")"
  log "built $tag in $((SECONDS - started)) s, $((size / 1000000)) MB"
done
# Untagged leftovers of earlier builds (a replaced dependency layer is gigabytes).
docker image prune -f >/dev/null
echo "export DOCKER_HOST=$DOCKER_HOST"
