# Sourced by scripts that need Debian packages (bootstrap.sh, engine.sh).
#   ensure_debian_packages TAG PKG...   installs the missing ones (root only); says which are missing otherwise
# `make -j3 setup cluster-bin images` runs bootstrap.sh and images.sh side by side on a fresh machine, and both may
# install packages. apt's own lock timeout covers dpkg's frontend lock but not `apt-get update`'s lists lock, so the
# second caller failed at once ("Could not get lock /var/lib/apt/lists/lock"). One flock serialises the two, and the
# check is repeated inside it: what the first caller installed, the second does not install again.

debian_missing() {
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || printf '%s\n' "$pkg"
  done
}

ensure_debian_packages() {
  local tag=$1
  shift
  [[ -n $(debian_missing "$@") ]] || return 0
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    printf '[%s] missing Debian packages (install them as root): %s\n' "$tag" "$(debian_missing "$@" | xargs)" >&2
    return 1
  fi
  (
    flock -w 1200 9 || { printf '[%s] waited 20 min for the apt lock\n' "$tag" >&2; exit 1; }
    mapfile -t missing < <(debian_missing "$@")
    ((${#missing[@]})) || exit 0
    printf '[%s] installing Debian packages: %s\n' "$tag" "${missing[*]}" >&2
    apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 &&
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
        "${missing[@]}" >&2
  ) 9>/var/lock/yolo-operator-apt.lock
}
