#!/usr/bin/env bash
# Install promtool, prometheus and prometheus-alertmanager from Debian when any is missing.
# Used by the rule tests (promtool) and the end-to-end alert test (prometheus + alertmanager).
# Debian names the Alertmanager binary `prometheus-alertmanager`. The packages' services are
# never left running: installs run under a policy-rc.d that forbids starting them, and any
# daemon the install still started is stopped by PID before this script returns.
set -euo pipefail

need=()
for bin in promtool prometheus prometheus-alertmanager; do
  command -v "$bin" >/dev/null 2>&1 || need+=("$bin")
done
if [ "${#need[@]}" -eq 0 ]; then
  exit 0
fi

die() {
  echo "ensure-prometheus: $*" >&2
  echo "ensure-prometheus: install them by hand: apt-get install prometheus prometheus-alertmanager" >&2
  exit 1
}

command -v apt-get >/dev/null 2>&1 || die "missing ${need[*]} and apt-get is not available"
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    exec sudo -n "$0" "$@"
  fi
  die "missing ${need[*]}; installing needs root (or passwordless sudo)"
fi

echo "ensure-prometheus: installing prometheus prometheus-alertmanager (missing: ${need[*]})" >&2

# Keep Debian maintainer scripts from starting the daemons (invoke-rc.d honours policy-rc.d).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  created_policy=1
fi
cleanup() {
  if [ "$created_policy" -eq 1 ]; then rm -f "$policy"; fi
}
trap cleanup EXIT

daemon_pids() {
  local exe pid
  for exe in /proc/[0-9]*/exe; do
    pid=${exe#/proc/}; pid=${pid%/exe}
    case "$(readlink "$exe" 2>/dev/null || true)" in
      /usr/bin/prometheus | /usr/bin/prometheus-alertmanager | /usr/bin/prometheus-node-exporter)
        echo "$pid" ;;
    esac
  done
}
before=" $(daemon_pids | tr '\n' ' ') "

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || die "apt-get update failed"
apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager \
  || die "apt-get install prometheus prometheus-alertmanager failed"

# Stop what the packages still managed to start (PIDs that were not there before), so no
# port stays bound; daemons that were already running are left alone.
for pid in $(daemon_pids); do
  case " $before " in *" $pid "*) ;; *) kill "$pid" 2>/dev/null || true ;; esac
done

for bin in promtool prometheus prometheus-alertmanager; do
  command -v "$bin" >/dev/null 2>&1 || die "$bin still missing after the install"
done
echo "ensure-prometheus: $(promtool --version 2>&1 | head -n 1)" >&2
