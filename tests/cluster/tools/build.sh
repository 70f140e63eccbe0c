#!/usr/bin/env bash
# Builds (or reuses) the GitOps tools the tests run, from the Go module proxy:
#   helm          helm.sh/helm/v3/cmd/helm, the version pinned in helm/go.mod
#   gitops-check  gitops/main.go: the real kstatus library (sigs.k8s.io/cli-utils) and Argo CD's Lua
#                 interpreter (github.com/yuin/gopher-lua), versions pinned in gitops/go.mod
# Each is cached outside the repository, keyed by its pinned version:
#   ${YOLO_OPERATOR_CACHE:-$HOME/.cache/yolo-operator}/helm-vX.Y.Z/bin/helm
#   ${YOLO_OPERATOR_CACHE:-$HOME/.cache/yolo-operator}/gitops-check-<cli-utils>-<gopher-lua>/bin/gitops-check
# A second run only checks stamps. Prints the path of each binary asked for, one a line (progress to stderr).
#
# Usage: bash tests/cluster/tools/build.sh [--force] [helm] [gitops-check]   (no name: both)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${YOLO_OPERATOR_CACHE:-$HOME/.cache/yolo-operator}"
log() { printf '[tools] %s\n' "$*" >&2; }

force=""
names=()
for a in "$@"; do
  case "$a" in
    --force) force=1 ;;
    helm | gitops-check) names+=("$a") ;;
    *) log "unknown argument $a"; exit 2 ;;
  esac
done
[[ ${#names[@]} -gt 0 ]] || names=(helm gitops-check)

mod_version() {
  awk -v m="$2" '{ for (i = 1; i < NF; i++) if ($i == m && $(i + 1) ~ /^v/) { print $(i + 1); exit } }' "$1/go.mod"
}

# build NAME MODULE_DIR OUT_DIR PACKAGE LDFLAGS: go build into OUT_DIR/bin unless the stamp says it is there.
build() {
  local name="$1" mod="$2" out="$3" pkg="$4" ldflags="$5"
  local bin="$out/bin"
  local stamp
  stamp="$(cat "$mod"/go.mod "$mod"/go.sum "$mod"/*.go "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
  if [[ -z "$force" && -x "$bin/$name" && "$(cat "$bin/.stamp" 2>/dev/null)" == "$stamp" ]]; then
    log "$name up to date in $bin"
    echo "$bin/$name"
    return
  fi
  command -v go >/dev/null || { log "go not found on PATH: install Go >= 1.26"; exit 1; }
  mkdir -p "$bin"
  (
    flock 9
    if [[ -z "$force" && -x "$bin/$name" && "$(cat "$bin/.stamp" 2>/dev/null)" == "$stamp" ]]; then
      exit 0
    fi
    rm -f "$bin/.stamp"
    local start=$SECONDS tmp
    tmp="$(mktemp -d "$bin/.build.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    log "building $name into $bin"
    (cd "$mod" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN="${GOTOOLCHAIN:-local}" \
      go build -trimpath -ldflags "$ldflags" -o "$tmp/$name" "$pkg")
    mv -f "$tmp/$name" "$bin/$name"
    echo "$stamp" > "$bin/.stamp"
    log "built $name in $((SECONDS - start)) s"
  ) 9>"$bin/.lock"
  echo "$bin/$name"
}

for name in "${names[@]}"; do
  case "$name" in
    helm)
      v="$(mod_version "$here/helm" helm.sh/helm/v3)"
      # The Kubernetes version helm assumes for `template` and `lint` follows its client-go, as helm's Makefile does.
      kv="$(mod_version "$here/helm" k8s.io/client-go)"; kv="${kv#v0.}"; kv="${kv%%.*}"
      ld="-s -w -X helm.sh/helm/v3/internal/version.version=$v -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
      for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
        ld+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$kv"
      done
      build helm "$here/helm" "$cache_root/helm-$v" helm.sh/helm/v3/cmd/helm "$ld"
      ;;
    gitops-check)
      cu="$(mod_version "$here/gitops" sigs.k8s.io/cli-utils)"
      gl="$(mod_version "$here/gitops" github.com/yuin/gopher-lua)"
      build gitops-check "$here/gitops" "$cache_root/gitops-check-$cu-$gl" . "-s -w"
      ;;
  esac
done
