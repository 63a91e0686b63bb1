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

# shellcheck source=scripts/apt-lib.sh
. "$(dirname "$0")/apt-lib.sh"
become_root_or_die "${need[*]}" "$@"

echo "ensure-prometheus: installing prometheus prometheus-alertmanager (missing: ${need[*]})" >&2

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

apt_install prometheus prometheus-alertmanager

# Stop what the packages still managed to start (PIDs that were not there before), so no
# port stays bound; daemons that were already running are left alone.
for pid in $(daemon_pids); do
  case " $before " in *" $pid "*) ;; *) kill "$pid" 2>/dev/null || true ;; esac
done

for bin in promtool prometheus prometheus-alertmanager; do
  command -v "$bin" >/dev/null 2>&1 || die "$bin still missing after the install"
done
echo "ensure-prometheus: $(promtool --version 2>&1 | head -n 1)" >&2
