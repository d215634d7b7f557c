# Helpers for the fleet test (test/shell/fleet.sh) and benchmark: three apikey_usage nodes and a
# PL/Proxy coordinator, each a throwaway cluster (scripts/cluster.sh).
# Source after scripts/cluster.sh; run as root.
#
#   fleet_start N [conf lines...]  nodes 0..N-1 (apikey_usage.node_id = i,
#                                  database apikey) and a coordinator
#                                  (database fleet, apikey_usage_fleet
#                                  over them); sets NODE_DIR[i],
#                                  NODE_PORT[i], COORD_DIR, COORD_PORT
#   fleet_stop                     stop and remove them all
#   node_psql I ...                psql on node I
#   coord_psql ...                 psql on the coordinator
#   node_pgctl I ARGS...           pg_ctl on node I (start, stop, restart)

declare -a NODE_DIR NODE_PORT
COORD_DIR=""; COORD_PORT=""

fleet_start() {
	local n=$1; shift
	local i
	for ((i = 0; i < n; i++)); do
		cluster_start "node$i" "apikey_usage.node_id = $i" "$@" || return 1
		NODE_DIR[$i]=$CLUSTER_DIR; NODE_PORT[$i]=$PGPORT
		CLUSTER_DIR=""
		node_psql "$i" -c "CREATE EXTENSION apikey_usage" || return 1
	done
	# the coordinator needs no preloaded library: node_of is pure
	cluster_start coord "shared_preload_libraries = ''" "$@" || return 1
	COORD_DIR=$CLUSTER_DIR; COORD_PORT=$PGPORT
	CLUSTER_DIR=""
	runuser -u postgres -- "$PGBIN/createdb" -h "$COORD_DIR" -p "$COORD_PORT" fleet || return 1
	local opts="modular_mapping '1'"
	for ((i = 0; i < n; i++)); do
		opts="$opts, p$i 'host=${NODE_DIR[$i]} port=${NODE_PORT[$i]} dbname=apikey connect_timeout=5'"
	done
	coord_psql -c "CREATE EXTENSION plproxy" \
		-c "CREATE EXTENSION apikey_usage_fleet" \
		-c "CREATE SERVER apikey_usage_fleet FOREIGN DATA WRAPPER plproxy OPTIONS ($opts)" \
		-c "CREATE USER MAPPING FOR PUBLIC SERVER apikey_usage_fleet" \
		-c "GRANT USAGE ON FOREIGN SERVER apikey_usage_fleet TO apikey_usage_admin, apikey_usage_app, apikey_usage_reader"
}

fleet_stop() {
	local d
	for d in "${NODE_DIR[@]}" "$COORD_DIR"; do
		[ -n "$d" ] || continue
		CLUSTER_DIR=$d; CLUSTER_DATA=$d/data
		[ -f "$d/data/postmaster.pid" ] && kill -CONT $(cat "$d/data/postmaster.pid" | head -n 1) 2>/dev/null
		cluster_stop
	done
	NODE_DIR=(); COORD_DIR=""
}

node_psql() {
	local i=$1; shift
	psql -X -v ON_ERROR_STOP=1 -qAt -h "${NODE_DIR[$i]}" -p "${NODE_PORT[$i]}" -U postgres -d apikey "$@"
}

coord_psql() {
	psql -X -v ON_ERROR_STOP=1 -qAt -h "$COORD_DIR" -p "$COORD_PORT" -U postgres -d fleet "$@"
}

node_pgctl() {
	local i=$1; shift
	(cd / && runuser -u postgres -- "$PGBIN/pg_ctl" -D "${NODE_DIR[$i]}/data" \
		-l "${NODE_DIR[$i]}/server.log" -w -t 60 "$@" >/dev/null)
}
