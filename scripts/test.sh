#!/usr/bin/env bash
# test.sh — runs the test stages (lint, unit, fuzz, integration), counts every test, prints
# one closing "N passed, N failed" line and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-all}
fuzz_seconds=${2:-45}
passed=0; failed=0
mkdir -p build

add() { passed=$((passed + $1)); failed=$((failed + $2)); }

stage_lint() {
  echo "== lint"
  if scripts/lint.sh; then add 1 0; else add 0 1; fi
}

stage_unit() {
  echo "== unit tests (ASan + UBSan)"
  local t out p f
  for t in build/asan/tests/test_*; do
    [ -x "$t" ] || continue
    out=$(ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 "$t" 2>build/$(basename "$t").log)
    local rc=$?
    p=$(sed -n 's/^unit: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' <<<"$out")
    f=$(sed -n 's/^unit: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' <<<"$out")
    [ -n "$p" ] || { p=0; f=1; }
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # a sanitizer report or crash
    echo "$(basename "$t"): $p passed, $f failed"
    [ "$f" -eq 0 ] || sed 's/^/    /' "build/$(basename "$t").log" | tail -40
    add "$p" "$f"
  done
}

stage_fuzz() {
  echo "== fuzz (decoder, ${fuzz_seconds}s)"
  rm -rf build/fuzz-ci && mkdir -p build/fuzz-ci
  if build/fuzz_decode -max_total_time="$fuzz_seconds" -max_len=4096 -print_final_stats=0 \
       -artifact_prefix=build/fuzz-ci/ build/fuzz-ci tests/fuzz/corpus >build/fuzz.log 2>&1; then
    echo "fuzz: $(grep -o 'Done [0-9]* runs' build/fuzz.log | tail -1), no crash"
    add 1 0
  else
    echo "fuzz: FAILED"; tail -40 build/fuzz.log; add 0 1
  fi
}

stage_integration() {
  echo "== integration tests (real redis-server, real nodes, Python websockets + msgpack)"
  local xml=build/integration.xml
  rm -f "$xml"
  /usr/bin/python3 -m pytest -q -p no:cacheprovider -rfE --junitxml="$xml" tests/integration
  local rc=$?
  if [ -f "$xml" ]; then
    read -r p f < <(/usr/bin/python3 - "$xml" <<'PY'
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
s = r if r.tag == "testsuite" else r.find("testsuite")
t, fl, er, sk = (int(s.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
print(t - fl - er - sk, fl + er)
PY
)
    [ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
    add "$p" "$f"
  else
    add 0 1
  fi
}

case "$mode" in
  unit) stage_unit ;;
  fuzz) stage_fuzz ;;
  integration) stage_integration ;;
  all) stage_lint; stage_unit; stage_fuzz; stage_integration ;;
  *) echo "usage: $0 unit|fuzz|integration|all [fuzz-seconds]"; exit 2 ;;
esac
echo
echo "total: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
