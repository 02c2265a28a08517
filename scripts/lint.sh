#!/usr/bin/env bash
# lint.sh — the format check (.clang-format) and cppcheck over every tracked C file, pyflakes over
# every tracked Python file (Debian's python3: it has the package).
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find gateway protocol include tests bench -name '*.[ch]')
[ -n "$files" ] || exit 0
rc=0
if ! clang-format --dry-run -Werror $files 2>build/lint-format.txt; then
  echo "lint: files not formatted (run 'make format'):"; grep -o '^[^:]*\.[ch]' build/lint-format.txt | sort -u
  rc=1
fi
if ! cppcheck -q --error-exitcode=1 --enable=warning,portability --inline-suppr \
     --suppress=missingIncludeSystem -Iinclude --std=c11 $files 2>build/lint-cppcheck.txt; then
  echo "lint: cppcheck:"; cat build/lint-cppcheck.txt; rc=1
fi
py=$(git ls-files '*.py' 2>/dev/null)
if [ -n "$py" ] && ! /usr/bin/python3 -m pyflakes $py >build/lint-pyflakes.txt 2>&1; then
  echo "lint: pyflakes:"; cat build/lint-pyflakes.txt; rc=1
fi
[ $rc -eq 0 ] && echo "lint: clean ($(echo $files | wc -w) files)"
exit $rc
