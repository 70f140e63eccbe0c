#!/usr/bin/env bash
# Re-pins requirements.lock: resolves pyproject's dependencies with every extra in a throw-away environment and
# writes what was installed. Run after changing dependencies in pyproject.toml, then commit both files.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --upgrade pip
"$tmp/venv/bin/pip" install -q "$root[workloads,dev]"
{
  echo "# Pinned versions of every Python package the project installs (operator, workloads, dev tools)."
  echo "# CI and the workload image install from this file. Regenerate with \`make lock\` after changing pyproject.toml."
  "$tmp/venv/bin/pip" freeze --exclude yolo-operator | LC_ALL=C sort -f
} > "$root/requirements.lock"
echo "wrote $root/requirements.lock"
