#!/usr/bin/env bash
# Builds (or reuses) the binaries of the test control plane from the Go module proxy:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd, kwok, kwokctl, and the real node's
#   kubelet and kube-proxy (same module set, one `go build` so they share its package cache).
# They are cached outside the repository, keyed by the Kubernetes version:
#   ${YOLO_OPERATOR_CACHE:-$HOME/.cache/yolo-operator}/k8s-vX.Y.Z/bin/
# A second run only checks a stamp and takes well under a second.
# Prints the bin directory as its last line of stdout (progress goes to stderr).
#
# Usage: bash tests/cluster/controlplane/build.sh [--force]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
k8s_mod="$here/kubernetes"
kwok_mod="$here/kwok"

log() { printf '[controlplane] %s\n' "$*" >&2; }

# Versions come from the go.mod files, the single place to bump them.
mod_version() {
  awk -v m="$2" '{ for (i = 1; i < NF; i++) if ($i == m && $(i + 1) ~ /^v/) { print $(i + 1); exit } }' "$1/go.mod"
}
k8s_version="$(mod_version "$k8s_mod" k8s.io/kubernetes)"
etcd_version="$(mod_version "$k8s_mod" go.etcd.io/etcd/server/v3)"
kwok_version="$(mod_version "$kwok_mod" sigs.k8s.io/kwok)"
for v in k8s_version etcd_version kwok_version; do
  [[ -n "${!v}" ]] || { log "cannot read $v from go.mod"; exit 1; }
done

cache_root="${YOLO_OPERATOR_CACHE:-$HOME/.cache/yolo-operator}"
bin="$cache_root/k8s-$k8s_version/bin"
binaries=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy etcd kwok kwokctl)

# The stamp covers the pinned versions and this script. Not the Go version: a Go upgrade alone should not
# cost a rebuild, and with a warm cache Go need not even be installed.
stamp="$(cat "$k8s_mod/go.mod" "$k8s_mod/go.sum" "$kwok_mod/go.mod" "$kwok_mod/go.sum" \
  "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"

up_to_date() {
  [[ -f "$bin/.stamp" && "$(cat "$bin/.stamp")" == "$stamp" ]] || return 1
  local b
  for b in "${binaries[@]}"; do [[ -x "$bin/$b" ]] || return 1; done
}

if [[ "${1:-}" != "--force" ]] && up_to_date; then
  log "binaries up to date in $bin"
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { log "go not found on PATH: install Go >= 1.26 (kwok v0.8.0 needs it)"; exit 1; }
mkdir -p "$bin"
# Serialise concurrent builds (CI job and a pytest session, say).
exec 9>"$bin/.lock"
flock 9
if [[ "${1:-}" != "--force" ]] && up_to_date; then
  log "binaries built by a concurrent run in $bin"
  echo "$bin"
  exit 0
fi
rm -f "$bin/.stamp"

export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
tmp="$(mktemp -d "$bin/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# `--version` must print the real version: kwokctl parses it to pick flags per release.
minor="${k8s_version#v1.}"; minor="${minor%%.*}"
build_date="$(date -u -d "$(awk -F'"' '/"Time"/ {print $8}' \
  "$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$k8s_version.info" 2>/dev/null)" \
  +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo 1970-01-01T00:00:00Z)"
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  k8s_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
  k8s_ldflags+=" -X $pkg.gitCommit=module-proxy-$k8s_version"
done
kwok_ldflags="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${kwok_version#v}"
kwok_ldflags+=" -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${k8s_version#v}"
kwok_ldflags+=" -X sigs.k8s.io/kwok/pkg/consts.PreRelease=GA"

timed() {
  local start=$SECONDS
  "$@"
  log "  done in $((SECONDS - start)) s"
}

build_started=$SECONDS
log "building Kubernetes $k8s_version, etcd $etcd_version, kwok $kwok_version into $bin"
log "(cold build on 2 cores takes tens of minutes; later runs reuse the binaries)"

log "downloading modules"
timed bash -c "cd '$k8s_mod' && go mod download && cd '$kwok_mod' && go mod download"

log "building kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy"
timed bash -c "cd '$k8s_mod' && go build -trimpath -ldflags '$k8s_ldflags' -o '$tmp/' \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet \
  k8s.io/kubernetes/cmd/kube-proxy"

log "building etcd"
timed bash -c "cd '$k8s_mod' && go build -trimpath -ldflags '-s -w' -o '$tmp/etcd' go.etcd.io/etcd/server/v3"

log "building kwok kwokctl"
timed bash -c "cd '$kwok_mod' && go build -trimpath -ldflags '$kwok_ldflags' -o '$tmp/' \
  sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl"

for b in "${binaries[@]}"; do
  [[ -x "$tmp/$b" ]] || { log "missing $b after build"; exit 1; }
  mv -f "$tmp/$b" "$bin/$b"
done
echo "$stamp" > "$bin/.stamp"

log "versions:"
"$bin/kube-apiserver" --version >&2
# Not `| head -1`: under pipefail, etcd dying of SIGPIPE would fail the build (exit 141).
"$bin/etcd" --version 2>&1 | sed -n 1p >&2
"$bin/kwokctl" --version >&2
log "built in $((SECONDS - build_started)) s: $bin"
echo "$bin"
