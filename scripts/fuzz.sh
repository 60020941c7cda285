#!/usr/bin/env bash
# Fuzzing (not part of `make test`): build every tests/fuzz/<name>_fuzz.c as a libFuzzer binary
# with clang (-fsanitize=fuzzer,address,undefined) and run each for SECONDS. See
# tests/fuzz/README.md.
#
#   scripts/fuzz.sh [-t SECONDS] [-j JOBS] [NAME...]   NAME: e164, json, ... (default: all)
#
# A target is linked with the core sources it needs, found by following `#include "x.h"` from
# the target through src/core (x.c is added when it exists), and with the project's libraries
# (--as-needed drops the unused ones). Seeds come from tests/fuzz/corpus/<name>/ and a libFuzzer
# dictionary from tests/fuzz/<name>.dict when present; what the fuzzer finds goes to
# $OUT/corpus/<name>/ (kept between runs), crashes to $OUT/<name>-crash-*. Prints one line per target; exit status 1 when a target failed to build
# or found a crash.
#
#   OUT=dir   build and corpus directory [build-fuzz]
#   CC=clang  compiler [clang]
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER=30
JOBS=1
while getopts "t:j:h" opt; do
  case $opt in
    t) SECONDS_PER=$OPTARG ;;
    j) JOBS=$OPTARG ;;
    *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
done
shift $((OPTIND - 1))

OUT=${OUT:-build-fuzz}
CC=${CC:-clang}
mkdir -p "$OUT"

# Core sources a file needs: the transitive closure of its quoted includes over src/core.
core_sources() {
  local -A seen=()
  local queue=("$1") f h
  while ((${#queue[@]})); do
    f=${queue[0]}
    queue=("${queue[@]:1}")
    for h in $(sed -n 's/^#include "\([^"]*\)\.h".*/\1/p' "$f"); do
      [[ -n "${seen[$h]:-}" ]] && continue
      seen[$h]=1
      [[ -f "src/core/$h.h" ]] && queue+=("src/core/$h.h")
      [[ -f "src/core/$h.c" ]] && queue+=("src/core/$h.c")
    done
  done
  for h in "${!seen[@]}"; do
    [[ -f "src/core/$h.c" ]] && echo "src/core/$h.c"
  done | sort
}

read -r -a LIBS <<<"$(pkg-config --cflags --libs talloc jansson libcyaml sqlite3 libpq libnats \
  libmicrohttpd libcrypto)"
CFLAGS=(-std=c17 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc/core)

if (($#)); then
  targets=()
  for n in "$@"; do targets+=("tests/fuzz/${n%_fuzz}_fuzz.c"); done
else
  targets=(tests/fuzz/*_fuzz.c)
fi

rc=0
for src in "${targets[@]}"; do
  name=$(basename "$src" _fuzz.c)
  if [[ ! -f "$src" ]]; then
    echo "fuzz $name: no such target ($src)"; rc=1; continue
  fi
  bin="$OUT/${name}_fuzz"
  mapfile -t deps < <(core_sources "$src")
  if ! "$CC" "${CFLAGS[@]}" -o "$bin" "$src" "${deps[@]}" -Wl,--as-needed "${LIBS[@]}" \
    >"$OUT/$name.build.log" 2>&1; then
    cat "$OUT/$name.build.log" >&2
    echo "fuzz $name: build failed"; rc=1; continue
  fi
  corpus="$OUT/corpus/$name"
  mkdir -p "$corpus"
  seeds=()
  [[ -d "tests/fuzz/corpus/$name" ]] && seeds=("tests/fuzz/corpus/$name")
  dict=()
  [[ -f "tests/fuzz/$name.dict" ]] && dict=(-dict="tests/fuzz/$name.dict")
  log="$OUT/$name.log"
  # -jobs/-workers: parallel fuzzing processes; with 1 the run stays in the foreground.
  par=()
  ((JOBS > 1)) && par=(-jobs="$JOBS" -workers="$JOBS")
  if "$bin" -max_total_time="$SECONDS_PER" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$OUT/$name-" "${dict[@]}" "${par[@]}" "$corpus" "${seeds[@]}" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
    echo "fuzz $name: ok seconds=$SECONDS_PER runs=${runs:-?} cov=${cov:-?}" \
      "corpus=$(find "$corpus" -type f | wc -l)"
  else
    tail -n 40 "$log" >&2
    echo "fuzz $name: FAILED (log $log, artifacts $OUT/$name-*)"
    rc=1
  fi
done
exit $rc
