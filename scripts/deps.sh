#!/usr/bin/env bash
# Install the system packages the build and the tests need, only when one
# is missing (a fresh Debian 12 machine has the PostgreSQL 15 server only).
set -euo pipefail
need=()
for pkg in postgresql-15 postgresql-server-dev-15 libsodium-dev postgresql-15-pgtap \
           libtap-parser-sourcehandler-pgtap-perl clang libclang-rt-14-dev gnuplot-nox \
           libipc-run-perl pgbouncer postgresql-15-plproxy; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
# the dashboard tests type-check with TypeScript (npm registry packages)
command -v node >/dev/null && command -v npm >/dev/null || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
	echo "deps: installing ${need[*]}"
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing packages and not root; install them: ${need[*]}" >&2
		exit 1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
