#!/usr/bin/env bash
# Benchmarks (`make bench`): build, start the test environment (PostgreSQL 15 and nats-server,
# see testenv.sh), run every benchmark binary in build/bench/ in name order, and print their
# one-line results. Nothing else goes to stdout; build output is shown (on stderr) only when the
# build fails, and a failing benchmark's own message is on stderr. Exit status 1 when any failed.
#
# Pinning: a benchmark whose source bench/<name>.c contains "bench.sh: taskset -c LIST" (in a
# comment) runs under `taskset -c LIST`.
#
#   BUILD=dir   build directory [build]
#   JOBS=n      ninja jobs [nproc]
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}

run_benches() {
  local rc=0 bin name pin
  for bin in "$BUILD"/bench/bench_*; do
    [[ -f "$bin" && -x "$bin" ]] || continue
    name=$(basename "$bin")
    pin=$(sed -n 's/.*bench\.sh: \(taskset -c [0-9,-]*\).*/\1/p' "bench/$name.c" 2>/dev/null \
      | head -n 1)
    # shellcheck disable=SC2086 # $pin is "taskset -c LIST" or empty
    $pin "$bin" || { echo "bench.sh: $name failed" >&2; rc=1; }
  done
  return $rc
}

if [[ "${1:-}" == "--run" ]]; then # inside testenv.sh, with the service URLs exported
  run_benches
  exit
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
if [[ -f "$BUILD/build.ninja" ]]; then
  setup=(meson setup --reconfigure "$BUILD")
else
  setup=(meson setup "$BUILD")
fi
if ! { "${setup[@]}" && ninja -C "$BUILD" -j "${JOBS:-$(nproc)}"; } >"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi

exec scripts/testenv.sh run -- "$0" --run
