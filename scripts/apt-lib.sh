# Shared by the ensure-*.sh scripts (source it): install Debian packages without starting services.
# Callers define die() first; apt_install leaves no policy-rc.d behind that it created itself.

# Re-run the calling script as root through passwordless sudo, or die naming what is missing.
become_root_or_die() {
  local missing="$1"; shift
  [ "$(id -u)" -eq 0 ] && return 0
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    exec sudo -n "$0" "$@"
  fi
  die "missing ${missing}; installing needs root (or passwordless sudo)"
}

# Install the given packages quietly, with policy-rc.d forbidding the packages' services to start.
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "missing $* and apt-get is not available"
  local policy=/usr/sbin/policy-rc.d created=0 rc=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    created=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get update -qq; then
    rc=1
  elif ! apt-get install -y -qq --no-install-recommends "$@"; then
    rc=2
  fi
  [ "$created" -eq 1 ] && rm -f "$policy"
  [ "$rc" -eq 1 ] && die "apt-get update failed"
  [ "$rc" -eq 2 ] && die "apt-get install $* failed"
  return 0
}
