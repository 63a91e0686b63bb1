#!/usr/bin/env bash
# Make sure the real-Ordo integration tests can run: Node.js + npm (Ordo is a Node 20 service),
# PostgreSQL 15 server binaries (initdb, pg_ctl, postgres), the psql client, and, when run as root,
# the non-root OS user the throw-away PostgreSQL runs as (it refuses to run as root).
# Missing pieces are installed from Debian; the PostgreSQL service the package would start is not
# started (policy-rc.d). benchmarks/ordo_real.py (used by tests/integration/ordo_upstream.py) does the rest:
# npm ci into a copy of ../shared/upstream/ordo, initdb/pg_ctl on a free loopback port, teardown.
set -euo pipefail

PG_USER="${ORDO_PG_USER:-asyncjob-pg}"
PG_DIRS=(/usr/local/bin /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin)

have_pg() {
  local bin dir
  for bin in initdb pg_ctl postgres; do
    command -v "$bin" >/dev/null 2>&1 && continue
    for dir in "${PG_DIRS[@]}"; do
      [ -x "$dir/$bin" ] && continue 2
    done
    return 1
  done
}

die() {
  echo "ensure-ordo: $*" >&2
  echo "ensure-ordo: install by hand: apt-get install postgresql-15 postgresql-client nodejs npm" >&2
  exit 1
}

pkgs=()
have_pg || pkgs+=(postgresql-server)
command -v psql >/dev/null 2>&1 || [ -x /usr/lib/postgresql/15/bin/psql ] || pkgs+=(postgresql-client)
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)

# shellcheck source=scripts/apt-lib.sh
. "$(dirname "$0")/apt-lib.sh"
if [ "${#pkgs[@]}" -gt 0 ] || ! id -u "$PG_USER" >/dev/null 2>&1; then
  become_root_or_die "${pkgs[*]:-the OS user $PG_USER}" "$@"
fi

if [ "${#pkgs[@]}" -gt 0 ]; then
  echo "ensure-ordo: installing ${pkgs[*]}" >&2
  # PostgreSQL 15 where the distribution has it, else its default major version.
  server=postgresql
  apt-cache show postgresql-15 >/dev/null 2>&1 && server=postgresql-15
  pkgs=("${pkgs[@]/postgresql-server/$server}")
  apt_install "${pkgs[@]}"
  have_pg || die "initdb/pg_ctl/postgres still missing after the install"
fi

if [ "$(id -u)" -eq 0 ] && ! id -u "$PG_USER" >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER" \
    || die "could not create the PostgreSQL OS user $PG_USER"
  echo "ensure-ordo: created system user $PG_USER (runs the tests' throw-away PostgreSQL)" >&2
fi
echo "ensure-ordo: node $(node --version); PostgreSQL binaries and psql present" >&2
