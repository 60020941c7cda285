#!/usr/bin/env bash
# Build and run every test: the normal build (unit + integration against SQLite, PostgreSQL and
# nats-server) and an ASan+UBSan build (unit + integration again), then the clang-format check.
# Ends with one plain line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
ASAN_BUILD=${ASAN_BUILD:-build-asan}
JOBS=${JOBS:-$(nproc)}
fail_setup=0

setup() { # setup DIR [meson args...]
  local dir=$1; shift
  # --reconfigure picks up modules and tests added since the last setup (meson.build lists
  # them by file existence).
  if [[ -f "$dir/build.ninja" ]]; then
    meson setup --reconfigure "$dir" "$@" >/dev/null || return 1
  else
    meson setup "$dir" "$@" >/dev/null || return 1
  fi
  ninja -C "$dir" >/dev/null || ninja -C "$dir"
}

setup "$BUILD" || fail_setup=1
setup "$ASAN_BUILD" -Db_sanitize=address,undefined -Db_lundef=false || fail_setup=1

run_suites() {
  local rc=0
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  meson test -C "$BUILD" --num-processes "$JOBS" --print-errorlogs || rc=1
  meson test -C "$ASAN_BUILD" --num-processes "$JOBS" --print-errorlogs || rc=1
  return $rc
}

if [[ $fail_setup -eq 0 ]]; then
  GH_TEST_REQUIRE=1 scripts/testenv.sh run -- bash -c "$(declare -f run_suites); BUILD=$BUILD ASAN_BUILD=$ASAN_BUILD JOBS=$JOBS run_suites"
fi

fmt_failed=0
if ! scripts/fmt.sh --check; then fmt_failed=1; fi

python3 - "$BUILD" "$ASAN_BUILD" "$fail_setup" "$fmt_failed" <<'PY'
import json, os, sys
passed = failed = skipped = 0
for d in sys.argv[1:3]:
    log = os.path.join(d, 'meson-logs', 'testlog.json')
    if not os.path.exists(log):
        continue
    for line in open(log):
        r = json.loads(line).get('result')
        if r in ('OK', 'EXPECTEDFAIL'):
            passed += 1
        elif r == 'SKIP':
            skipped += 1
        else:
            failed += 1
failed += int(sys.argv[3]) + int(sys.argv[4])
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
sys.exit(1 if failed else 0)
PY
