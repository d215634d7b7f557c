#!/usr/bin/env bash
# `make test`: every test suite against a real PostgreSQL 15, from nothing.
#   1. install missing packages, build, install the extension
#   2. unit tests + bounded libFuzzer run of the key format (pure C)
#   3. pg_regress and isolation specs (their own --temp-instance)
#   4. pgTAP suites (pg_prove) on a throwaway preloaded cluster; TAP
#      (prove, PostgreSQL::Test::Cluster) multi-server tests in test/tap/
#   5. shell-level tests (restarts, crashes, load), each with its own cluster
# Exits non-zero on any failure; the last line is "N passed, M failed".
# Set TESTS="name ..." to run only some shell tests, FUZZ_SECONDS to change
# the fuzzing time (default 20).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
passed=0; failed=0; failures=()
t0=$SECONDS
record() { # name status  (prints the seconds since the previous record)
	local took=$((SECONDS - t0)); t0=$SECONDS
	if [ "$2" -eq 0 ]; then passed=$((passed+1)); echo "ok     - $1 (${took}s)";
	else failed=$((failed+1)); failures+=("$1"); echo "not ok - $1 (${took}s)"; fi
}

bash scripts/deps.sh || exit 1
make -s >/dev/null && make -s install >/dev/null || { echo "build failed"; exit 1; }

# 2. pure C
TOP=$(mktemp -d /tmp/aku-reg.XXXXXX)
trap 'rm -rf "$TOP"' EXIT
WORK=$TOP; chmod 755 "$TOP"
make -s -C test/unit unit >"$WORK/unit.log" 2>&1; rc=$?
tail -n 1 "$WORK/unit.log"; record "unit: keyformat" $rc
make -s -C test/unit fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-10}" >"$WORK/fuzz.log" 2>&1; rc=$?
grep -E "fuzz executions" "$WORK/fuzz.log"; record "fuzz: keyformat (${FUZZ_SECONDS:-10}s)" $rc

# 3. pg_regress + isolation, as the postgres user on a copy it owns
WORK="$TOP/tree"; mkdir "$WORK"
tar -C "$ROOT" --exclude=./.git --exclude=node_modules --exclude=./bench/results -cf - . | tar -C "$WORK" -xf -
chown -R postgres:postgres "$WORK"
(cd "$WORK" && runuser -u postgres -- make -s installcheck >"$WORK/installcheck.log" 2>&1); rc=$?
grep -E "^(ok|not ok|test |     |#)|tests (passed|failed)|failed \(" "$WORK/installcheck.log" | head -n 60
if [ $rc -ne 0 ]; then
	cat "$WORK"/regression.diffs "$WORK"/output_iso/regression.diffs 2>/dev/null | head -n 200
fi
record "pg_regress + isolation" $rc

# 4. pgTAP
if ls test/pgtap/*.sql >/dev/null 2>&1; then
	bash test/run_pgtap.sh; record "pgTAP" $?
fi

# 4b. multi-server tests (standby, promotion, failover, dump/restore,
# upgrade) with PostgreSQL's TAP framework
if ls test/tap/*.pl >/dev/null 2>&1; then
	bash test/run_tap.sh; record "TAP: multi-server" $?
fi

# 5. shell-level tests
for t in test/shell/*.sh; do
	name=$(basename "$t" .sh)
	if [ -n "${TESTS:-}" ] && [[ " $TESTS " != *" $name "* ]]; then continue; fi
	echo "# shell: $name"
	timeout 600 bash "$t"; record "shell: $name" $?
done

echo
[ $failed -gt 0 ] && printf 'FAILED: %s\n' "${failures[@]}"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
