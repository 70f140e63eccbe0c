#!/usr/bin/env bash
# Writes the release artefacts of one version (docs/install.md#releases):
#   <out>/yolo-operator-<V>.yaml             `kubectl apply -f` install: manifests/default rendered
#   <out>/yolo-operator-monitoring-<V>.yaml  the same plus monitoring (manifests/monitoring)
#   <out>/yolo-operator-<V>.tgz              the Helm chart, packaged (`helm install yolo-operator <file>`)
#   <out>/argocd-cm-health-<V>.yaml          the Argo CD health checks (manifests/argocd/argocd-cm.yaml)
#   <out>/SHA256SUMS
# First it writes V into pyproject.toml, the one place the version lives, and every file derived from it
# (scripts/version.py), and requires a `## [V]` section in CHANGELOG.md. Commit that, tag vV, publish <out>.
#
# Usage: bash scripts/release.sh VERSION [OUT_DIR]     (OUT_DIR defaults to dist/, which git ignores)
# Tools: kubectl (kustomize built in) and helm, from $KUBECTL/$HELM, else the cached builds of
# tests/cluster/controlplane/build.sh and tests/cluster/tools/build.sh (built on first use).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${1:?usage: scripts/release.sh VERSION [OUT_DIR]}"
out="${2:-$root/dist}"
log() { printf '[release] %s\n' "$*" >&2; }

grep -q "^## \[$version\]" "$root/CHANGELOG.md" || { log "CHANGELOG.md has no '## [$version]' section"; exit 1; }
python3 "$root/scripts/version.py" --set "$version"

kubectl="${KUBECTL:-$(bash "$root/tests/cluster/controlplane/build.sh" | tail -1)/kubectl}"
helm="${HELM:-$(bash "$root/tests/cluster/tools/build.sh" helm | tail -1)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

render() {  # render OVERLAY FILE: a header naming the version, then the rendered objects
  { printf '# Yolo Operator %s: kubectl apply --server-side -f %s\n' "$version" "$(basename "$2")"
    "$kubectl" kustomize "$root/manifests/$1"; } > "$2"
}
render default "$out/yolo-operator-$version.yaml"
render monitoring "$out/yolo-operator-monitoring-$version.yaml"
# The chart's files/ are links into the repository; `helm package` stores what they point at.
"$helm" package "$root/charts/yolo-operator" --destination "$out" 2> >(grep -v 'found symbolic link' >&2) >/dev/null
cp "$root/manifests/argocd/argocd-cm.yaml" "$out/argocd-cm-health-$version.yaml"
(cd "$out" && sha256sum "yolo-operator-$version.yaml" "yolo-operator-monitoring-$version.yaml" \
  "yolo-operator-$version.tgz" "argocd-cm-health-$version.yaml" > SHA256SUMS)
log "wrote $out:"
ls -1 "$out" >&2
