# Throwaway PostgreSQL 15 clusters for tests, the demo and benchmarks.
# Source this file; run as root (the server runs as the postgres OS user).
#
#   cluster_start NAME [extra postgresql.conf lines...]
#       initdb + start in a fresh short temp dir; sets PGHOST PGPORT PGUSER
#       PGDATABASE and CLUSTER_DIR / CLUSTER_DATA / CLUSTER_LOG.
#   cluster_stop           fast stop and remove the dir (safe to call twice)
#   cluster_restart [mode] pg_ctl restart (-m fast by default)
#   cluster_psql ...       psql -X -v ON_ERROR_STOP=1 -qAt against it
#
# DUMP_LOG_ON_STOP=FILE copies the server log to FILE when the cluster stops
# (to debug a test that removes its cluster).

# PG_CONFIG selects the PostgreSQL installation (default: the one on PATH).
PGBIN=${PGBIN:-$("${PG_CONFIG:-pg_config}" --bindir)}
CLUSTER_DIR=""

free_port() {
	python3 - <<'PY'
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

cluster_start() {
	local name=$1; shift
	CLUSTER_DIR=$(mktemp -d "/tmp/aku.${name:0:8}.XXXXXX")
	chown postgres:postgres "$CLUSTER_DIR"
	CLUSTER_DATA=$CLUSTER_DIR/data
	CLUSTER_LOG=$CLUSTER_DIR/server.log
	local port; port=$(free_port)
	(cd / && runuser -u postgres -- "$PGBIN/initdb" -D "$CLUSTER_DATA" -U postgres -A trust \
		-E UTF8 --locale=C.UTF-8 --no-sync >"$CLUSTER_DIR/initdb.log" 2>&1) || {
		cat "$CLUSTER_DIR/initdb.log" >&2; return 1; }
	cat >>"$CLUSTER_DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$CLUSTER_DIR'
shared_preload_libraries = 'apikey_usage'
apikey_usage.database = 'apikey'
max_connections = 60
log_line_prefix = '%m [%p] %b '
CONF
	local line
	for line in "$@"; do echo "$line" >>"$CLUSTER_DATA/postgresql.conf"; done
	export PGHOST=$CLUSTER_DIR PGPORT=$port PGUSER=postgres PGDATABASE=apikey
	cluster_pgctl start || return 1
	runuser -u postgres -- "$PGBIN/createdb" -h "$PGHOST" -p "$PGPORT" apikey 2>/dev/null || true
}

cluster_pgctl() {
	(cd / && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$CLUSTER_DATA" -l "$CLUSTER_LOG" -w -t 120 "$@" >/dev/null) || {
		echo "pg_ctl $* failed; server log:" >&2; tail -n 40 "$CLUSTER_LOG" >&2; return 1; }
}

cluster_restart() {
	cluster_pgctl -m "${1:-fast}" restart
}

cluster_stop() {
	[ -n "${DUMP_LOG_ON_STOP:-}" ] && [ -n "${CLUSTER_LOG:-}" ] && cp "$CLUSTER_LOG" "$DUMP_LOG_ON_STOP" 2>/dev/null
	if [ -n "$CLUSTER_DIR" ] && [ -d "$CLUSTER_DIR" ]; then
		if [ -f "$CLUSTER_DATA/postmaster.pid" ]; then
			(cd / && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$CLUSTER_DATA" -m immediate -w -t 60 stop >/dev/null 2>&1) || true
		fi
		rm -rf "$CLUSTER_DIR"
	fi
	CLUSTER_DIR=""
}

cluster_psql() {
	psql -X -v ON_ERROR_STOP=1 -qAt "$@"
}

# Wait until the background worker is connected (pid shown in runtime_stats).
cluster_wait_worker() {
	local i
	for i in $(seq 1 100); do
		[ -n "$(cluster_psql -c "SELECT worker_pid FROM apikey_usage.runtime_stats" 2>/dev/null)" ] && return 0
		sleep 0.2
	done
	echo "background worker did not start" >&2; return 1
}
