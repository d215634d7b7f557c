#!/usr/bin/env bash
# Issue 10, items 2 and 5:
#  - with every logging knob on (log_statement = all, duration logging,
#    bind parameters, errors with STATEMENT lines, PL/pgSQL contexts,
#    auto_explain plans, stderr + csvlog + jsonlog, verbose errors), no key
#    that was presented reaches the server log; its redacted form does;
#    nor do keys cut short by the parameter length settings, changed by a
#    typo, unquoted, or dumped as bytes by debug_print_parse / _plan;
#  - the secret file is refused with FATAL when the group or others may
#    read it, and when its size is wrong; fixed, the server starts again.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/cluster.sh
trap cluster_stop EXIT
fail() {
	echo "FAIL: $*" >&2
	if [ -n "${KEEP_LOGS:-}" ] && [ -n "${CLUSTER_DIR:-}" ]; then
		cp -r "$CLUSTER_DATA/log" "$CLUSTER_LOG" "$KEEP_LOGS/" 2>/dev/null || true
	fi
	exit 1
}
# Wait until the logging collector has written everything sent so far to
# every destination: a marker statement is logged after it, and the
# collector writes what it reads from its pipe in order, so once the marker
# is in the csvlog, jsonlog and stderr files the earlier lines are too.
# (A fixed sleep is not enough on a loaded machine, and a grep of half-
# written files would then check nothing.)
MARK=0
wait_logged() {
	local marker i ext ok
	MARK=$((MARK + 1))
	marker="log-marker-$MARK-$$"
	cluster_psql -c "SELECT '$marker' AS marker" >/dev/null
	for i in $(seq 1 150); do
		ok=1
		for ext in csv json log; do
			grep -qF -- "$marker" "$CLUSTER_DATA"/log/*."$ext" 2>/dev/null || ok=0
		done
		[ "$ok" = 1 ] && return 0
		sleep 0.2
	done
	fail "the logging collector did not write $marker to every log file within 30 s"
}

cluster_start redact "fsync = off" \
	"log_statement = 'all'" "log_min_duration_statement = 0" "log_duration = on" \
	"log_min_error_statement = debug5" "log_error_verbosity = verbose" \
	"log_parameter_max_length = -1" "log_parameter_max_length_on_error = -1" \
	"logging_collector = on" "log_destination = 'stderr,csvlog,jsonlog'" \
	"log_directory = 'log'" "session_preload_libraries = 'auto_explain'" \
	"auto_explain.log_min_duration = 0" "auto_explain.log_analyze = on" \
	"auto_explain.log_nested_statements = on" "auto_explain.log_verbose = on"
cluster_psql -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker

KEYS=()
for name in one two three four five six; do
	KEYS+=("$(cluster_psql -c "SELECT api_key FROM apikey_usage.generate_key('sec', '$name', key_prefix => 'live$name')")")
done
K0=${KEYS[0]} K1=${KEYS[1]} K2=${KEYS[2]} K3=${KEYS[3]} K4=${KEYS[4]} K5=${KEYS[5]}

# literal keys in statements, in errors, in PL/pgSQL messages and contexts
cluster_psql -c "SELECT valid FROM apikey_usage.verify_key('$K0')" >/dev/null
cluster_psql -c "SELECT allowed FROM apikey_usage.check_request('$K1', 'GET', '/v1/x')" >/dev/null
psql -X -qAt -c "SELECT apikey_usage.verify_key('$K2')::text::int" >/dev/null 2>&1 || true
psql -X -qAt -c "DO \$\$BEGIN RAISE EXCEPTION 'rejected %', '$K3' USING DETAIL = 'key $K3', HINT = '$K3'; END\$\$" >/dev/null 2>&1 || true
psql -X -qAt -c "DO \$\$DECLARE r record; BEGIN SELECT * INTO r FROM apikey_usage.verify_key('$K3'); PERFORM 1 / 0 WHERE '$K3' <> ''; END\$\$" >/dev/null 2>&1 || true
# bind parameters (extended protocol), in a success and in an error
printf 'SELECT valid FROM apikey_usage.verify_key(:k);\n' >"$CLUSTER_DIR/bind.sql"
printf 'SELECT (:k)::int;\n' >"$CLUSTER_DIR/binderr.sql"
"$PGBIN/pgbench" -n -M extended -t 2 -D k="$K4" -f "$CLUSTER_DIR/bind.sql" >/dev/null 2>&1 ||
	fail "pgbench with a bound key failed"
"$PGBIN/pgbench" -n -M prepared -t 1 -D k="$K5" -f "$CLUSTER_DIR/binderr.sql" >/dev/null 2>&1 || true
# a key glued to other text is still recognised
cluster_psql -c "SELECT 'token=x$K0;' AS t" >/dev/null
# many statements in ONE session, across errors (each error longjmps out of
# the statement; the per-process redaction state must survive that): every
# statement of the session is still redacted, not only a session's first
psql -X -q >/dev/null 2>&1 <<SQL || true
SELECT apikey_usage.verify_key('$K2')::text::int;
SELECT valid FROM apikey_usage.verify_key('$K1');
DO \$\$BEGIN RAISE EXCEPTION 'rejected %', '$K0' USING DETAIL = 'key $K0'; END\$\$;
SELECT 'same session $K2' AS t;
SELECT 'same session again $K5' AS t;
SQL
wait_logged

logs=("$CLUSTER_LOG" "$CLUSTER_DATA"/log/*)
[ "${#logs[@]}" -ge 4 ] || fail "expected stderr, csvlog and jsonlog files, got ${logs[*]}"
for k in "${KEYS[@]}"; do
	if grep -qF -- "$k" "${logs[@]}"; then
		grep -nF -- "$k" "${logs[@]}" | head -n 3 >&2
		fail "a presented key is in the server log"
	fi
	# the tail after the prefix never appears either (not even split)
	tail_part=${k#*_}
	grep -qF -- "${tail_part:0:20}" "${logs[@]}" && fail "part of a key is in the server log"
	# ...while its redacted form does: the hook really saw these lines
	grep -qF -- "${k%%_*}_*************************************************" "${logs[@]}" ||
		fail "redacted form of ${k%%_*}_... not found in the log"
done
grep -q "parameters: \$1 = 'livefive_\*\*\*\*" "${logs[@]}" || fail "bind parameter line not redacted as expected"
grep -q "Query Text:" "${logs[@]}" || fail "auto_explain did not log (test is not testing plans)"
for ext in csv json log; do
	grep -qF "same session again ${K5%%_*}_****" "$CLUSTER_DATA"/log/*."$ext" ||
		fail "the last statement of a session with errors is not redacted in the $ext log"
done
echo "ok: ${#KEYS[@]} keys used with every logging knob on; none in ${#logs[@]} log files, redacted forms present"

# Keys that arrive cut short or changed still give most of a key away (the
# checksum is a CRC: a key can be rebuilt from its body), so anything that
# could hold most of one is masked, checksum or not: a key cut by the
# parameter length settings, one with a typo, one character short or long,
# lower-cased as an unquoted identifier, two keys back to back, the end of a
# key in a JSON error context (cut at its start), and constants in the node
# trees that debug_print_* dumps as decimal bytes.
MORE=()
for name in seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen \
	twenty twentyone twentytwo twentythree twentyfour; do
	MORE+=("$(cluster_psql -c "SELECT api_key FROM apikey_usage.generate_key('sec', '$name')")")
done
flip_last() { local k=$1; echo "${k:0:${#k}-1}$( [ "${k: -1}" = A ] && echo B || echo A)"; }
PGOPTIONS="-c log_parameter_max_length=50" "$PGBIN/pgbench" -n -M extended -t 1 -D k="${MORE[0]}" \
	-f "$CLUSTER_DIR/bind.sql" >/dev/null 2>&1 || fail "pgbench with a cut bind parameter failed"
PGOPTIONS="-c log_parameter_max_length_on_error=46" "$PGBIN/pgbench" -n -M extended -t 1 -D k="${MORE[1]}" \
	-f "$CLUSTER_DIR/binderr.sql" >/dev/null 2>&1 || true
cluster_psql -c "SELECT '$(flip_last "${MORE[2]}")' AS typo" >/dev/null
cluster_psql -c "SELECT '${MORE[3]:0:${#MORE[3]}-1}' AS short, '${MORE[4]}x' AS long" >/dev/null
psql -X -qAt -c "SELECT apikey_usage.verify_key(${MORE[5]})" >/dev/null 2>&1 || true
cluster_psql -c "SELECT '${MORE[6]}${MORE[6]}' AS twice" >/dev/null
psql -X -qAt -c "SELECT '{\"key\": ${MORE[7]}}'::json" >/dev/null 2>&1 || true
PGOPTIONS="-c debug_print_parse=on -c debug_print_plan=on" psql -X -qAt \
	-c "SELECT valid FROM apikey_usage.verify_key('${MORE[8]}')" >/dev/null
# a space pasted into a key, and a URL-encoded '_'
k9=${MORE[9]}
cluster_psql -c "SELECT '${k9:0:23} ${k9:23}' AS pasted, '${MORE[10]%%_*}%5F${MORE[10]#*_}' AS encoded" >/dev/null
# ... after the '_', as CRLF, as two spaces, as a no-break and a zero-width
# space (the real bytes, in statements and in error messages)
k13=${MORE[13]} k14=${MORE[14]} k15=${MORE[15]} k16=${MORE[16]} k17=${MORE[17]}
nbsp=$(printf '\xc2\xa0') zwsp=$(printf '\xe2\x80\x8b') crlf=$'\r\n'
for v in "${k13%%_*}_ ${k13#*_}" "${k14:0:23}${crlf}${k14:23}" "${k15:0:23}  ${k15:23}" \
	"${k16:0:23}${nbsp}${k16:23}" "${k17:0:23}${zwsp}${k17:23}"; do
	cluster_psql -c "SELECT '$v' AS pasted" >/dev/null
	psql -X -qAt -c "SELECT '$v'::int" >/dev/null 2>&1 || true
done
# a node dump wraps a key inside a string at column 78, and a long
# constant deep in nested subqueries gets its size wrapped too
PGOPTIONS="-c debug_print_parse=on" psql -X -qAt \
	-c "NOTIFY c, '$(printf 'x%.0s' $(seq 1 40)) ${MORE[11]}'" >/dev/null
PGOPTIONS="-c debug_print_parse=on -c debug_print_rewritten=on" psql -X -qAt -c "SELECT length(c) FROM
	(SELECT c FROM (SELECT c FROM (SELECT c FROM (SELECT c FROM (SELECT c FROM (SELECT c FROM (SELECT c FROM
	(SELECT '$(printf 'x%.0s' $(seq 1 10000))${MORE[12]}'::text AS c OFFSET 0) a OFFSET 0) b OFFSET 0) d OFFSET 0) e OFFSET 0) f
	OFFSET 0) g OFFSET 0) h OFFSET 0) i" >/dev/null
wait_logged
logs=("$CLUSTER_LOG" "$CLUSTER_DATA"/log/*)
# the log files with the line breaks of wrapped dumps (and their indentation) removed
joined="$CLUSTER_DIR/joined.txt"
perl -0777 -pe 's/\n[ \t]*//g' "${logs[@]}" >"$joined"
for k in "${MORE[@]}"; do
	body=${k#*_}
	lower=$(printf '%s' "$body" | tr 'A-Z' 'a-z')
	for part in "${body:0:20}" "${body:14:20}" "${body:29:20}" "${lower:0:20}" "${lower:29:20}"; do
		if grep -qF -- "$part" "${logs[@]}" "$joined"; then
			grep -nF -- "$part" "${logs[@]}" | head -n 2 >&2
			fail "20 characters of a cut or changed key are in the server log"
		fi
	done
done
grep -qE "parameters: \\\$1 = '[a-z0-9]+_[*]{24,}[.][.][.]'" "${logs[@]}" ||
	fail "the cut bind parameter is not in the log in its masked form (is the test testing it?)"
grep -q ":constvalue" "$CLUSTER_DATA"/log/*.log || fail "debug_print_parse wrote no node tree (is the test testing it?)"
# every constant long enough to hold most of a key is printed as zeros
# (a dump may wrap a constant's bytes over several lines)
perl -0777 -ne 'while (/:constvalue\s*(\d+)\s*\[([^\]]*)\]/g) { my ($n, $b) = ($1, $2); if ($n >= 25 && $b =~ /[1-9]/) { print substr("$n [$b]", 0, 200), "\n"; exit 1 } }' \
	"$joined" || fail "a long constant of a node tree dump is in the server log"
grep -q ":constvalue 10" "$joined" || fail "no dump of the 10 kB constant (is the test testing it?)"
perl -0777 -ne 'exit(/:constvalue (\d+) \[[\s0]+\]/ && $1 >= 25 ? 0 : 1)' "$CLUSTER_DATA"/log/*.log ||
	fail "no masked constant found in the node tree dumps (is the test testing them?)"
# an ordinary identifier with underscores is left alone
cluster_psql -c "SELECT 'apikey_usage_reader_is_not_masked' AS plain" >/dev/null
wait_logged
grep -qF "apikey_usage_reader_is_not_masked" "$CLUSTER_DATA"/log/*.log || fail "an ordinary identifier was masked"
echo "ok: keys cut short (parameter lengths), with a typo, short, long, unquoted, doubled, with a space, URL-encoded, in a JSON context and in (wrapped) node dumps are masked"

# secret file mode and size
SECRET="$CLUSTER_DATA/apikey_usage.secret"
start_fails() { # expected-message
	if (cd / && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$CLUSTER_DATA" -l "$CLUSTER_LOG" -w -t 30 start >/dev/null 2>&1); then
		fail "the server started with a bad secret file ($1)"
	fi
	grep -q "FATAL:.*$1" "$CLUSTER_LOG" || { tail -n 5 "$CLUSTER_LOG" >&2; fail "no FATAL '$1' in the log"; }
}
cluster_pgctl -m fast stop
chmod 0640 "$SECRET"
start_fails "has group or world access"
chmod 0604 "$SECRET"
start_fails "has group or world access"
chmod 0600 "$SECRET"
cp -p "$SECRET" "$CLUSTER_DIR/secret.good"
printf 'x' >>"$SECRET"
start_fails "must hold exactly 32 bytes, not 33"
head -c 31 "$CLUSTER_DIR/secret.good" >"$SECRET"
start_fails "must hold exactly 32 bytes, not 31"
cp -p "$CLUSTER_DIR/secret.good" "$SECRET"
cluster_pgctl start
cluster_wait_worker
got=$(cluster_psql -c "SELECT reason FROM apikey_usage.verify_key('$K0')")
[ "$got" = valid ] || fail "after restoring the secret file: $got"
echo "ok: secret file refused with FATAL at modes 0640 and 0604 and sizes 33 and 31; the original starts"

# keys of a fleet node (two more base62 digits) are recognised as well
echo "apikey_usage.node_id = 5" >>"$CLUSTER_DATA/postgresql.conf"
cluster_restart fast
cluster_wait_worker
KN=$(cluster_psql -c "SELECT api_key FROM apikey_usage.generate_key('sec', 'node five')")
tail_n=${KN#*_}
[ ${#tail_n} -eq 51 ] || fail "expected a node key with 51 characters after the prefix"

cluster_psql -c "SELECT valid FROM apikey_usage.verify_key('$KN')" >/dev/null
psql -X -qAt -c "SELECT apikey_usage.verify_key('$KN')::text::int" >/dev/null 2>&1 || true
wait_logged
grep -qF -- "$KN" "$CLUSTER_LOG" "$CLUSTER_DATA"/log/* && fail "a node key is in the server log"
grep -qF -- "ak_***************************************************'" "$CLUSTER_LOG" "$CLUSTER_DATA"/log/* ||
	fail "redacted form of the node key not found"
echo "ok: a key of fleet node 5 is redacted too"
