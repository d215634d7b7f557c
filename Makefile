# apikey_usage — PGXS build.  `make demo` and `make test` are the two
# commands of README; `make bench` prints the performance report.

MODULE_big = apikey_usage
EXTENSION = apikey_usage
# apikey_usage--0.1.0.sql is the released 0.1.0 script, frozen: never edit
# it.  The current version's script and the upgrade script are assembled
# from sqlsrc/ (fresh install) and sqlsrc/update-0.1.0--0.2.0/ (upgrade);
# test/tap/ compares an upgraded catalog with a fresh one.
EXTVERSION = 0.2.0
DATA = apikey_usage--0.1.0.sql apikey_usage--$(EXTVERSION).sql apikey_usage--0.1.0--$(EXTVERSION).sql
# coordinator/: the second extension, apikey_usage_fleet (PL/Proxy
# coordinator of a fleet; README, "Scaling out"), installed alongside.
DATA += coordinator/apikey_usage_fleet.control coordinator/apikey_usage_fleet--$(EXTVERSION).sql
EXTRA_CLEAN = apikey_usage--$(EXTVERSION).sql apikey_usage--0.1.0--$(EXTVERSION).sql apikey_usage--0.1.0--$(EXTVERSION).sql.tmp
PGFILEDESC = "apikey_usage - API keys, rate limits and usage analytics"

# src/ by subsystem: core (init, GUCs), keys (format, secret, cache,
# limiter), log (ring, spool, worker), api (SQL-callable request path).
SRCS = $(wildcard src/*/*.c)
OBJS = $(SRCS:.c=.o)
SHLIB_LINK = -lsodium
# the worker writes only into tables of this version (see flusher.c)
PG_CPPFLAGS = -I$(srcdir)/src -I$(srcdir)/src/keys -DAPIKEY_USAGE_VERSION='"$(EXTVERSION)"'
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare -Wno-cast-function-type

# pg_regress and isolation start their own preloaded instance
# (run as the postgres OS user; see scripts/test.sh).
REGRESS = $(sort $(basename $(notdir $(wildcard sql/*.sql))))
REGRESS_OPTS = --temp-instance=./tmp_check --temp-config=./test/regress.conf --dbname=contrib_regression
ISOLATION = $(sort $(basename $(notdir $(wildcard specs/*.spec))))
ISOLATION_OPTS = --temp-instance=./tmp_check_iso --temp-config=./test/regress.conf

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# pgxs appends --dbname=$(ISOLATION_TESTDB) (isolation_regression by
# default, set by the include above) to ISOLATION_OPTS; the worker serves
# contrib_regression (test/regress.conf).
ISOLATION_TESTDB = contrib_regression

# The install script is assembled from sqlsrc/ (core, analytics, views
# and grants), each part readable top to bottom; the upgrade script from
# the parts in sqlsrc/update-0.1.0--$(EXTVERSION)/, in name order, where a
# line "--@include FILE LINE" stands for the block of sqlsrc/FILE that
# holds LINE (scripts/sql_include.awk): what the upgrade creates exactly
# as a fresh install does is written once.
apikey_usage--$(EXTVERSION).sql: $(sort $(wildcard sqlsrc/*.sql))
	cat $^ > $@
apikey_usage--0.1.0--$(EXTVERSION).sql: $(sort $(wildcard sqlsrc/update-0.1.0--$(EXTVERSION)/*.sql)) $(wildcard sqlsrc/*.sql) scripts/sql_include.awk
	awk -f scripts/sql_include.awk $(sort $(wildcard sqlsrc/update-0.1.0--$(EXTVERSION)/*.sql)) > $@.tmp
	mv $@.tmp $@
all: apikey_usage--$(EXTVERSION).sql apikey_usage--0.1.0--$(EXTVERSION).sql


.PHONY: test demo bench deps
deps:
	bash scripts/deps.sh
test:
	bash scripts/test.sh
demo:
	bash scripts/demo.sh
bench:
	bash bench/run.sh $(BENCH)

# PGXS does not track header dependencies: rebuild every object when a
# header changes (a stale struct layout compiles and then misbehaves).
$(OBJS): $(wildcard src/*.h src/*/*.h)
