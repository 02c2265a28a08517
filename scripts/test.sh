#!/usr/bin/env bash
# test.sh — runs the test stages and counts every test: one count line per stage, one closing
# "total: N passed, N failed" line, exit non-zero on any failure.
#
#   scripts/test.sh [stage ...] [fuzz-seconds]     stages: lint unit fuzz vectors integration js
#                                                   (default: all of them)
#
# Stages run concurrently (the integration tests mostly wait on timers and sockets; the fuzzer
# takes one core for a few seconds; lint, unit and vectors are cheap). Each stage writes its
# output to build/test-logs/<stage>.log; they are printed in the order above, each as soon as it
# and the ones before it are done. js (the JavaScript client's tests with Node's test runner,
# against real nodes) runs after integration, not beside it: both start nodes and Redis.
#   FUZZ_SECONDS         fuzzing time after the corpus replay (default 15; `make fuzz` runs long)
#   CARDGW_TEST_WORKERS  pytest-xdist workers for the integration stage (default 3 per core,
#                        at most 8; 1 runs it in one process)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3  # Debian's python3: it sees the python3-* packages the tests need
ORDER=(lint unit fuzz vectors integration js)
fuzz_seconds=${FUZZ_SECONDS:-15}
stages=()
for a in "$@"; do
  case "$a" in
    all) stages+=("${ORDER[@]}") ;;
    lint | unit | fuzz | vectors | integration | js) stages+=("$a") ;;
    *[!0-9]* | '')
      echo "usage: $0 [lint|unit|fuzz|vectors|integration|js|all ...] [fuzz-seconds]" >&2; exit 2 ;;
    *) fuzz_seconds=$a ;;
  esac
done
[ ${#stages[@]} -gt 0 ] || stages=("${ORDER[@]}")
want() { local s; for s in "${stages[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

LOGS=build/test-logs
mkdir -p "$LOGS"

# Each stage prints to its log and writes "passed failed [what]" to $LOGS/<stage>.count.
count() { echo "$2 $3${4:+ $4}" >"$LOGS/$1.count"; }

stage_lint() {
  echo "== lint (clang-format, cppcheck)"
  if scripts/lint.sh; then count lint 1 0; else count lint 0 1; fi
}

stage_unit() {
  echo "== unit tests (ASan + UBSan)"
  local t out rc p f tp=0 tf=0 n=0
  for t in build/asan/tests/test_*; do
    [ -x "$t" ] || continue
    n=$((n + 1))
    out=$(ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 "$t" \
          2>"$LOGS/$(basename "$t").log")
    rc=$?
    p=$(sed -n 's/^unit: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' <<<"$out")
    f=$(sed -n 's/^unit: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' <<<"$out")
    [ -n "$p" ] || { p=0; f=1; }
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # a sanitizer report or crash
    echo "$(basename "$t"): $p passed, $f failed"
    [ "$f" -eq 0 ] || sed 's/^/    /' "$LOGS/$(basename "$t").log" | tail -40
    tp=$((tp + p)); tf=$((tf + f))
  done
  [ $n -gt 0 ] || { echo "no unit test binaries in build/asan/tests (make unit builds them)"; tf=1; }
  count unit $tp $tf
}

# Two checks: every input of the seed corpus decodes without a sanitizer report (a regression
# test), then a short fuzzing run from that corpus (make fuzz is the long one).
stage_fuzz() {
  echo "== fuzz (decoder: corpus replay, then ${fuzz_seconds}s of fuzzing)"
  local p=0 f=0 bin=build/fuzz_decode work=build/fuzz-ci
  local n
  n=$(find tests/fuzz/corpus -type f | wc -l)
  # file arguments: each input is run once and nothing is written into the corpus
  if find tests/fuzz/corpus -type f -print0 | xargs -0 $bin >"$LOGS/fuzz-replay.txt" 2>&1 &&
     [ "$(grep -c '^Executed ' "$LOGS/fuzz-replay.txt")" -eq "$n" ]; then
    echo "fuzz: corpus replay of $n inputs, no crash"; p=$((p + 1))
  else
    echo "fuzz: corpus replay FAILED"; tail -40 "$LOGS/fuzz-replay.txt"; f=$((f + 1))
  fi
  rm -rf "$work" && mkdir -p "$work"
  if $bin -max_total_time="$fuzz_seconds" -max_len=4096 -print_final_stats=0 \
       -artifact_prefix="$work/" "$work" tests/fuzz/corpus >"$LOGS/fuzz-run.txt" 2>&1; then
    echo "fuzz: $(grep -o 'Done [0-9]* runs' "$LOGS/fuzz-run.txt" | tail -1) in ${fuzz_seconds}s, no crash"
    p=$((p + 1))
  else
    echo "fuzz: FAILED (inputs in $work/)"; tail -40 "$LOGS/fuzz-run.txt"; f=$((f + 1))
  fi
  count fuzz $p $f
}

# pytest with a JUnit report; the count comes from the report (a crash of pytest is a failure).
pytest_stage() {
  local name=$1 what=$2; shift 2
  local xml=$LOGS/$name.xml rc p f
  rm -f "$xml"
  $PY -m pytest -q -p no:cacheprovider -rfE --junitxml="$xml" "$@"
  rc=$?
  if [ -f "$xml" ]; then
    read -r p f < <($PY - "$xml" <<'PY'
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
s = r if r.tag == "testsuite" else r.find("testsuite")
t, fl, er, sk = (int(s.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
print(t - fl - er - sk, fl + er)
PY
)
    [ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
  else
    p=0; f=1
  fi
  count "$name" "$p" "$f" "$what"
}

stage_vectors() {
  echo "== vectors (tests/vectors/vectors.json checked with Python's msgpack and json; no server)"
  pytest_stage vectors "vector cases" tests/integration/test_vectors.py
}

stage_integration() {
  local cores workers xdist=()
  cores=$(nproc 2>/dev/null || echo 2)
  workers=${CARDGW_TEST_WORKERS:-$((cores * 3 > 8 ? 8 : cores * 3))}
  if [ "$workers" -gt 1 ]; then
    if $PY -c 'import xdist' 2>/dev/null; then
      # loadgroup: one test at a time to whichever worker is free, the slow ones first
      xdist=(-n "$workers" --dist loadgroup)
    else
      echo "(python3-pytest-xdist is not installed: one process; scripts/install-deps.sh adds it)"
      workers=1
    fi
  fi
  echo "== integration (real redis-server and nodes; Python websockets, msgpack, redis; $workers workers)"
  pytest_stage integration "node behaviours" "${xdist[@]}" tests/integration \
    --ignore=tests/integration/test_vectors.py
}

stage_js() {
  echo "== js (clients/js with Node's test runner: real redis-server and nodes; size budget)"
  local out p f
  if [ ! -d clients/js/node_modules ]; then
    echo "clients/js/node_modules is missing: scripts/install-deps.sh runs npm ci there"
    count js 0 1 "client tests"
    return
  fi
  out=$(cd clients/js && CARDGW_TEST_BIN="$PWD/../../build/cardgw-asan" node --test \
        --test-reporter=spec --test-reporter-destination=stdout \
        --test-reporter=tap --test-reporter-destination="../../$LOGS/js.tap" test/ 2>&1)
  local rc=$?
  echo "$out"
  p=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$LOGS/js.tap" | tail -1)
  f=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$LOGS/js.tap" | tail -1)
  [ -n "$p" ] || { p=0; f=1; }
  [ -n "$f" ] || f=1
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  count js "$p" "$f" "client tests"
}

# Start every wanted stage; the integration tests first (they take longest), then the fuzzer;
# lint, unit and vectors one after another beside them.
declare -A pid
for s in integration fuzz; do
  if want $s; then
    rm -f "$LOGS/$s.count"
    "stage_$s" >"$LOGS/$s.log" 2>&1 &
    pid[$s]=$!
  fi
done
(
  for s in lint unit vectors; do
    if want $s; then rm -f "$LOGS/$s.count"; "stage_$s" >"$LOGS/$s.log" 2>&1; fi
  done
) &
cheap=$!

passed=0; failed=0; summary=()
for s in "${ORDER[@]}"; do
  want "$s" || continue
  if [ "$s" = js ]; then
    rm -f "$LOGS/js.count"
    stage_js >"$LOGS/js.log" 2>&1
  elif [ -n "${pid[$s]:-}" ]; then wait "${pid[$s]}"; else wait "$cheap" 2>/dev/null; fi
  cat "$LOGS/$s.log"
  p=0; f=1; what=""
  [ -f "$LOGS/$s.count" ] && read -r p f what <"$LOGS/$s.count"
  [ -f "$LOGS/$s.count" ] || echo "$s: no count (the stage did not finish)"
  passed=$((passed + p)); failed=$((failed + f))
  summary+=("$(printf '%-12s %4d passed, %d failed%s' "$s:" "$p" "$f" "${what:+  ($what)}")")
done
wait

echo
echo "== summary"
printf '%s\n' "${summary[@]}"
echo "total: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
