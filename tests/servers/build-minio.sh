#!/usr/bin/env bash
# Builds (or reuses) MinIO, the real S3-compatible server the remote-source tests run on loopback, from the Go
# module proxy. Cached outside the repository, keyed by version:
#   ${YOLO_OPERATOR_CACHE:-$HOME/.cache/yolo-operator}/minio-<version>/bin/minio
# A second run only checks a stamp. Prints the binary's path as its last line of stdout (progress goes to stderr).
# MinIO (AGPL-3.0) is only run by the tests, as a separate program: nothing of it is linked into or shipped with
# the project.
#
# Usage: bash tests/servers/build-minio.sh [--force]
set -euo pipefail

# The last MinIO commit the module proxy serves as `latest` (2026-02-12); bump here, the single place.
version="v0.0.0-20260212201848-7aac2a2c5b7c"
log() { printf '[minio] %s\n' "$*" >&2; }

cache_root="${YOLO_OPERATOR_CACHE:-$HOME/.cache/yolo-operator}"
dir="$cache_root/minio-$version/bin"
# The stamp names the version and the build recipe's revision (bump it when the `go install` line changes), not
# this file's text: editing a comment must not cost a 15-minute rebuild.
stamp="$version recipe-1"

up_to_date() { [[ -x "$dir/minio" && -f "$dir/.stamp" && "$(cat "$dir/.stamp")" == "$stamp" ]]; }

if [[ "${1:-}" != "--force" ]] && up_to_date; then
  log "up to date in $dir"
  echo "$dir/minio"
  exit 0
fi
command -v go >/dev/null || { log "go not found on PATH: install Go >= 1.26"; exit 1; }
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
if [[ "${1:-}" != "--force" ]] && up_to_date; then
  log "built by a concurrent run in $dir"
  echo "$dir/minio"
  exit 0
fi
rm -f "$dir/.stamp"
tmp="$(mktemp -d "$dir/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

started=$SECONDS
log "building MinIO $version (cold: minutes on 2 cores; later runs reuse the binary)"
# -p 1 by default: the control plane's build runs beside this one in `make test`'s set-up.
CGO_ENABLED=0 GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOBIN="$tmp" GOFLAGS="-buildvcs=false -p=${MINIO_BUILD_JOBS:-1}" \
  nice go install -trimpath -ldflags "-s -w" "github.com/minio/minio@$version"
[[ -x "$tmp/minio" ]] || { log "no minio binary after the build"; exit 1; }
mv -f "$tmp/minio" "$dir/minio"
echo "$stamp" > "$dir/.stamp"
log "built in $((SECONDS - started)) s: $dir/minio"
echo "$dir/minio"
