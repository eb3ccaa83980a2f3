#!/usr/bin/env bash
# Start (or stop) a local PostgreSQL server for Optuna studies shared by many workers, and print its
# storage URL. Workers on this machine or others then join the same studies:
#
#   bash scripts/postgres.sh                      # start; prints  export TUNEBENCH_STORAGE=postgresql+psycopg2://...
#   eval "$(bash scripts/postgres.sh --env)"      # start and export TUNEBENCH_STORAGE in this shell
#   tunebench search --benchmark digits_numpy_mlp --workers 2      # on each machine
#   bash scripts/postgres.sh --status | --url | --stop
#
# Settings (environment): PGDATA_DIR (default .postgres/ in the project; the data folder and the
# password file live there), TB_PG_PORT (5433), TB_PG_HOST (listen address, default 127.0.0.1: set
# 0.0.0.0 or this machine's address so other machines can connect; their subnet goes in TB_PG_ALLOW,
# e.g. 10.0.0.0/8), TB_PG_USER / TB_PG_DB (tunebench), TB_PG_PASSWORD (random by default, kept in
# $PGDATA_DIR/password). PostgreSQL refuses to run as root: as root the cluster belongs to the
# `postgres` system user. Local socket logins are trusted; TCP logins need the password.
#
# The URL names the psycopg2 driver, which the project installs (SQLAlchemy 2.1 maps a bare
# postgresql:// to psycopg 3). The password is in the URL: keep TUNEBENCH_STORAGE out of shared logs;
# tunebench never logs it to MLflow.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-start}
case "$mode" in start | --start) mode=start ;; --env | --url | --status | --stop) ;;
  -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: $0 [--env|--url|--status|--stop]" >&2; exit 2 ;;
esac

DIR=${PGDATA_DIR:-$PWD/.postgres}
mkdir -p "$DIR"
[ -n "${PGDATA_DIR:-}" ] || [ -f "$DIR/.gitignore" ] || echo '*' >"$DIR/.gitignore" # keep it out of git
DIR=$(cd "$DIR" && pwd)
DATA=$DIR/data SOCK=$DIR/sock LOG=$DIR/postgres.log PWFILE=$DIR/password
PORT=${TB_PG_PORT:-5433} HOST=${TB_PG_HOST:-127.0.0.1} ALLOW=${TB_PG_ALLOW:-}
ROLE=${TB_PG_USER:-tunebench} DB=${TB_PG_DB:-tunebench}

bindir() {
  local d
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null || true)
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return; }
  fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return; }
  done
  if command -v pg_ctl >/dev/null 2>&1; then
    d=$(dirname "$(readlink -f "$(command -v pg_ctl)")")
    [ -x "$d/initdb" ] && { echo "$d"; return; }
  fi
  echo "error: PostgreSQL server programs (initdb, pg_ctl) not found; install them, e.g." \
    "'apt-get install postgresql' (Debian/Ubuntu) or 'conda install -c conda-forge postgresql'" >&2
  exit 1
}
BIN=$(bindir)

if [ "$(id -u)" = 0 ]; then # PostgreSQL will not run as root
  id postgres >/dev/null 2>&1 || { echo "error: running as root and there is no 'postgres' user" >&2; exit 1; }
  chown postgres: "$DIR"
  chmod 700 "$DIR"
  as_owner() { runuser -u postgres -- "$@"; }
  # the owner must be able to reach the folder
  p=$DIR
  while [ "$p" != / ]; do
    p=$(dirname "$p")
    runuser -u postgres -- test -x "$p" || {
      echo "error: user postgres cannot enter $p; set PGDATA_DIR to a folder it can reach (e.g. /var/tmp/tunebench-pg)" >&2
      exit 1
    }
  done
else
  as_owner() { "$@"; }
fi
pgc() { (cd "$DIR" && as_owner "$BIN/pg_ctl" -D "$DATA" "$@"); }
local_sql() { (cd "$DIR" && as_owner "$BIN/psql" -h "$SOCK" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt "$@"); }

url() {
  local host=$HOST
  [ "$host" = 0.0.0.0 ] || [ "$host" = '*' ] && host=$(hostname -f 2>/dev/null || hostname)
  echo "postgresql+psycopg2://$ROLE:$(cat "$PWFILE")@$host:$PORT/$DB"
}

running() { [ -f "$DATA/postmaster.pid" ] && pgc status >/dev/null 2>&1; }

case "$mode" in
  --stop)
    if running; then pgc -m fast -w stop >/dev/null && echo "stopped the PostgreSQL server in $DATA"; else echo "not running"; fi
    exit 0 ;;
  --status)
    if running; then echo "running: $(url | sed 's#://\([^:]*\):[^@]*@#://\1:***@#')"; exit 0; else echo "not running"; exit 3; fi ;;
  --url)
    running || { echo "error: not running; start it with: bash $0" >&2; exit 1; }
    url; exit 0 ;;
esac

if [ ! -f "$PWFILE" ]; then
  (umask 077; printf '%s' "${TB_PG_PASSWORD:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}" >"$PWFILE")
  [ "$(id -u)" = 0 ] && chown postgres: "$PWFILE"
fi
as_owner mkdir -p "$SOCK"

if [ ! -f "$DATA/PG_VERSION" ]; then
  (cd "$DIR" && as_owner "$BIN/initdb" -D "$DATA" -U postgres -E UTF8 --no-locale \
    --auth-local=trust --auth-host=scram-sha-256 >"$DIR/initdb.log" 2>&1) ||
    { cat "$DIR/initdb.log" >&2; exit 1; }
fi
if [ -n "$ALLOW" ] && ! grep -q "tunebench: $ALLOW" "$DATA/pg_hba.conf"; then
  echo "host all all $ALLOW scram-sha-256 # tunebench: $ALLOW" | as_owner tee -a "$DATA/pg_hba.conf" >/dev/null
fi

if ! running; then
  # max_connections: each worker process holds a few connections (storage pool + heartbeat)
  pgc -l "$LOG" -o "-k '$SOCK' -p $PORT -c listen_addresses=$HOST -c max_connections=200" -W start >/dev/null
  for _ in $(seq 1 120); do
    (cd "$DIR" && as_owner "$BIN/pg_isready" -q -h "$SOCK" -p "$PORT") && break
    sleep 0.5
  done
  (cd "$DIR" && as_owner "$BIN/pg_isready" -q -h "$SOCK" -p "$PORT") ||
    { echo "error: PostgreSQL did not start; see $LOG:" >&2; tail -20 "$LOG" >&2; exit 1; }
fi

PW=$(cat "$PWFILE")
if [ "$(local_sql -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]; then
  local_sql -c "CREATE ROLE \"$ROLE\" LOGIN PASSWORD '${PW//\'/\'\'}'" >/dev/null
fi
if [ "$(local_sql -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
  (cd "$DIR" && as_owner "$BIN/createdb" -h "$SOCK" -p "$PORT" -U postgres -O "$ROLE" "$DB")
fi

if [ "$mode" = --env ]; then
  echo "export TUNEBENCH_STORAGE='$(url)'"
else
  echo "PostgreSQL for tunebench studies is running (data: $DATA, log: $LOG; stop: bash $0 --stop)." >&2
  echo "Give every worker this storage (--storage URL, or in the environment):" >&2
  echo "export TUNEBENCH_STORAGE='$(url)'"
fi
