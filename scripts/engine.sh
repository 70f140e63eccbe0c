# Sourced by scripts that need a Docker engine (images.sh, the e2e suite's node set-up).
#   ensure_engine                   sets DOCKER_HOST to an engine that answers, starting Debian's dockerd if needed
# The engine this starts keeps its data root under the cache (layers survive between runs) and listens on its own
# socket, so it never disturbs an engine the machine already runs.

# shellcheck source=scripts/debian.sh
source "$(dirname "${BASH_SOURCE[0]}")/debian.sh"

engine_cache="${YOLO_OPERATOR_CACHE:-$HOME/.cache/yolo-operator}"

engine_answers() { timeout 20 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

ensure_engine() {
  export DOCKER_BUILDKIT=0
  if [[ -n ${DOCKER_HOST:-} ]] && engine_answers; then return 0; fi
  local sock=/run/yolo-operator/docker.sock
  export DOCKER_HOST="unix://$sock"
  if engine_answers; then return 0; fi
  ensure_debian_packages engine docker.io iptables
  command -v docker >/dev/null || { printf '[engine] no docker client on PATH\n' >&2; return 1; }
  mkdir -p /run/yolo-operator "$engine_cache/docker"
  printf '[engine] starting dockerd on %s (data root %s)\n' "$sock" "$engine_cache/docker" >&2
  # setsid: the engine outlives this script (the tests and later builds use it); its log stays in the cache.
  setsid dockerd --host "$DOCKER_HOST" --data-root "$engine_cache/docker" --exec-root /run/yolo-operator/docker-exec \
    --pidfile /run/yolo-operator/docker.pid --storage-driver overlay2 \
    >"$engine_cache/dockerd.log" 2>&1 </dev/null &
  local i
  for i in $(seq 1 60); do
    engine_answers && return 0
    sleep 1
  done
  printf '[engine] dockerd did not answer within 60 s: %s\n' "$engine_cache/dockerd.log" >&2
  tail -n 20 "$engine_cache/dockerd.log" >&2
  return 1
}
