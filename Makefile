# apikey_usage — PGXS build.  `make demo` and `make test` are the two
# commands of README; `make bench` prints the performance report.

MODULE_big = apikey_usage
EXTENSION = apikey_usage
DATA = apikey_usage--0.1.0.sql
EXTRA_CLEAN = apikey_usage--0.1.0.sql
PGFILEDESC = "apikey_usage - API keys, rate limits and usage analytics"

SRCS = $(wildcard src/*.c)
OBJS = $(SRCS:.c=.o)
SHLIB_LINK = -lsodium
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
# and grants), each part readable top to bottom.
apikey_usage--0.1.0.sql: $(sort $(wildcard sqlsrc/*.sql))
	cat $^ > $@
all: apikey_usage--0.1.0.sql


.PHONY: test demo bench deps
deps:
	bash scripts/deps.sh
test:
	bash scripts/test.sh
demo:
	bash scripts/demo.sh
bench:
	bash bench/run.sh $(BENCH)
