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
REGRESS = keys_setup keys_errors log_request analytics
REGRESS_OPTS = --temp-instance=./tmp_check --temp-config=./test/regress.conf --dbname=contrib_regression
ISOLATION = revoke_vs_fill last_request
ISOLATION_OPTS = --temp-instance=./tmp_check_iso --temp-config=./test/regress.conf --dbname=contrib_regression

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

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
