#!/usr/bin/env bash
# Benchmarks (`make bench`): build, start the test environment (PostgreSQL 15 and nats-server,
# see testenv.sh), run every benchmark binary in build/bench/ in name order, and print their
# one-line results. Nothing else goes to stdout; build output is shown (on stderr) only when the
# build fails, and a failing benchmark's own message is on stderr. Exit status 1 when any failed.
#
# Markers in a benchmark's source bench/<name>.c (in a comment):
#   "bench.sh: taskset -c LIST"  run it under `taskset -c LIST`;
#   "bench.sh: quiet [ARGS]"     run it (with ARGS) before the test environment starts: latency
#                                benchmarks pin a server to one core, and PostgreSQL's background
#                                work (autovacuum of the other benchmarks' databases) on that core
#                                shows up as their p99;
#   "bench.sh: env [ARGS]"       run it (with ARGS) inside the test environment.
# A benchmark with neither quiet nor env runs once inside the environment without arguments; one
# line of each kind may appear several times (one run per line).
#
#   BUILD=dir   build directory [build]
#   JOBS=n      ninja jobs [nproc]
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}

# The argument lists bench/<name>.c asks for in phase quiet|env, one per line ("-": none).
runs_of() {
  local src=$1 phase=$2
  if grep -Eq 'bench\.sh: (quiet|env)' "$src" 2>/dev/null; then
    sed -n "s/.*bench\.sh: $phase\(.*\)\$/\1/p" "$src" | sed 's/\*\/.*$//; s/^ *//; s/ *$//; s/^$/-/'
  elif [[ $phase == env ]]; then
    echo "-"
  fi
}

# run_benches quiet|env: every benchmark's runs of that phase, in name order.
run_benches() {
  local phase=$1 rc=0 bin name pin args
  for bin in "$BUILD"/bench/bench_*; do
    [[ -f "$bin" && -x "$bin" ]] || continue
    name=$(basename "$bin")
    pin=$(sed -n 's/.*bench\.sh: \(taskset -c [0-9,-]*\).*/\1/p' "bench/$name.c" 2>/dev/null \
      | head -n 1)
    while IFS= read -r args; do
      [[ -n "$args" ]] || continue
      [[ $args == "-" ]] && args=""
      # shellcheck disable=SC2086 # $pin is "taskset -c LIST" or empty; $args are words
      $pin "$bin" $args || { echo "bench.sh: $name $args failed" >&2; rc=1; }
    done < <(runs_of "bench/$name.c" "$phase")
  done
  return $rc
}

if [[ "${1:-}" == "--run" ]]; then # inside testenv.sh, with the service URLs exported
  run_benches env
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

rc=0
run_benches quiet || rc=1
scripts/testenv.sh run -- "$0" --run || rc=1
exit $rc
