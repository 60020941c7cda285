#!/usr/bin/env bash
# Test environment: a throwaway PostgreSQL 15 and a nats-server with JetStream, in a temp dir,
# on free loopback ports.
#
#   scripts/testenv.sh run -- CMD...   start both, run CMD with the URLs exported, stop both
#   scripts/testenv.sh start DIR       start both under DIR, write DIR/env (source it)
#   scripts/testenv.sh stop DIR        stop what start DIR started
#
# Exports GH_TEST_PG_URL (postgresql://...) and GH_TEST_NATS_URL (nats://...).
# initdb refuses to run as root, so as root the cluster belongs to the postgres user.
set -euo pipefail

PGBIN=$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || true)
[[ -n "$PGBIN" ]] || { echo "testenv: PostgreSQL 15 not installed (run scripts/deps.sh)" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

as_pg() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

wait_for() { # wait_for SECONDS CMD...
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || return 1
    sleep 0.05
  done
}

start() {
  local dir=$1
  mkdir -p "$dir"
  local pgport natsport
  pgport=$(free_port)
  natsport=$(free_port)
  mkdir -p "$dir/pg" "$dir/pgsock" "$dir/nats"
  [[ $(id -u) -eq 0 ]] && chown postgres:postgres "$dir/pg" "$dir/pgsock" && chmod 755 "$dir"
  as_pg "$PGBIN/initdb" -D "$dir/pg/data" -U postgres -A trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  as_pg "$PGBIN/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/server.log" -w -t 30 \
    -o "-h 127.0.0.1 -p $pgport -k $dir/pgsock -c fsync=off -c max_connections=300 -c shared_buffers=128MB" \
    start >/dev/null || { cat "$dir/pg/server.log" >&2; return 1; }
  as_pg "$PGBIN/createdb" -h 127.0.0.1 -p "$pgport" -U postgres ghasi_test

  nats-server -js -a 127.0.0.1 -p "$natsport" -sd "$dir/nats" -l "$dir/nats.log" &
  echo $! >"$dir/nats.pid"
  wait_for 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$natsport" \
    || { echo "testenv: nats-server did not start" >&2; cat "$dir/nats.log" >&2; return 1; }

  cat >"$dir/env" <<EOT
export GH_TEST_PG_URL=postgresql://postgres@127.0.0.1:$pgport/ghasi_test
export GH_TEST_PG_ADMIN_URL=postgresql://postgres@127.0.0.1:$pgport/postgres
export GH_TEST_NATS_URL=nats://127.0.0.1:$natsport
export GH_TEST_ENV_DIR=$dir
EOT
}

stop() {
  local dir=$1
  if [[ -f "$dir/nats.pid" ]]; then
    kill "$(cat "$dir/nats.pid")" 2>/dev/null || true
    rm -f "$dir/nats.pid"
  fi
  if [[ -f "$dir/pg/data/postmaster.pid" ]]; then
    as_pg "$PGBIN/pg_ctl" -D "$dir/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
}

case "${1:-}" in
  start) start "$2" ;;
  stop) stop "$2" ;;
  run)
    shift; [[ "${1:-}" == "--" ]] && shift
    dir=$(mktemp -d /tmp/ghasi-testenv.XXXXXX)
    trap 'stop "$dir"; rm -rf "$dir"' EXIT
    start "$dir"
    # shellcheck disable=SC1091
    source "$dir/env"
    "$@"
    ;;
  *) echo "usage: $0 run -- CMD... | start DIR | stop DIR" >&2; exit 2 ;;
esac
