#!/usr/bin/env bash
# Multi-server tests (standby, promotion, failover, dump/restore, upgrade)
# in test/tap/*.pl, with PostgreSQL's TAP framework (PostgreSQL::Test::
# Cluster from the PGXS tree, IPC::Run from libipc-run-perl).  initdb
# refuses root, so prove runs as the postgres OS user on a copy of the tree.
# TAP_TESTS="test/tap/x.pl ..." runs only some.  Honours PG_CONFIG.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PG_CONFIG=${PG_CONFIG:-pg_config}
PG_CONFIG=$(command -v "$PG_CONFIG")
PERL_LIB=$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/perl
BINDIR=$("$PG_CONFIG" --bindir)
WORK=$(mktemp -d /tmp/aku-tap.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
chmod 755 "$WORK"
mkdir "$WORK/tree"
tar -C "$ROOT" --exclude=./.git --exclude=node_modules --exclude=./bench/results -cf - . | tar -C "$WORK/tree" -xf -
# the upgrade test builds the released 0.1.0 from git: give it the sources
if git -C "$ROOT" cat-file -e 9b1384b^{commit} 2>/dev/null; then
	mkdir "$WORK/v0.1.0" && git -C "$ROOT" archive 9b1384b | tar -C "$WORK/v0.1.0" -xf -
fi
chown -R postgres:postgres "$WORK"
tests=${TAP_TESTS:-$(ls test/tap/*.pl)}
cd "$WORK/tree" && runuser -u postgres -- env PATH="$BINDIR:$PATH" PG_CONFIG="$PG_CONFIG" \
	PG_REGRESS="$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/regress/pg_regress" \
	TESTDIR="$WORK/tree" AKU_V010_SRC="$WORK/v0.1.0" \
	prove -I "$PERL_LIB" -I test/tap $tests
rc=$?
if [ $rc -ne 0 ]; then
	for f in "$WORK"/tree/tmp_check/log/regress_log_*; do
		[ -f "$f" ] && { echo "=== $f (last 60 lines)"; tail -n 60 "$f"; }
	done
fi
exit $rc
