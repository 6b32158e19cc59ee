# pgmedic build.  `make` builds build/pgmedic (optimized).  `make test` installs
SHELL := /bin/bash
# what is missing, builds an ASan+UBSan binary in build/asan and runs every test.
CC      ?= cc
PKGS    := libevent_core libevent_extra libevent_openssl openssl libpq jansson inih libxxhash
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpg_query
WARN    := -Wall -Wextra -Wshadow -Wno-unused-parameter -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wno-format-truncation -Wno-unknown-warning-option
CFLAGS_COMMON := -std=gnu11 -D_GNU_SOURCE -Isrc $(WARN) $(PKG_CFLAGS) -pthread
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
CFLAGS_COMMON += -DPGMEDIC_VERSION='"$(VERSION)"'

# Link-time optimization across the proxy's units (the profiler's calls from the
# hot path inline): ~8 % fewer instructions and ~40 % fewer instruction-cache
# misses per pgbench -S transaction (make bench-instructions).  `make LTO=` without.
LTO         ?= -flto=auto
OPT_CFLAGS  := -O2 -g -DNDEBUG $(LTO)
ASAN_CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined

SRCS      := $(sort $(wildcard src/*/*.c))
LIB_SRCS  := $(SRCS)
MAIN_SRC  := src/main.c
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))

OBJS      := $(LIB_SRCS:%.c=build/obj/%.o) build/obj/src/main.o
ASAN_OBJS := $(LIB_SRCS:%.c=build/asan/obj/%.o)
DEPS      := $(OBJS:.o=.d) $(ASAN_OBJS:.o=.d) build/asan/obj/src/main.d

.PHONY: all test unit integration demo bench scale soak fuzz fuzz-smoke clean setup asan
all: build/pgmedic

setup:
	@./scripts/setup.sh

build/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(OPT_CFLAGS) -MMD -MP -c $< -o $@

build/asan/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) $(ASAN_CFLAGS) -MMD -MP -c $< -o $@

build/pgmedic: $(OBJS)
	$(CC) $(OPT_CFLAGS) -pthread -o $@ $^ $(PKG_LIBS) -lm

build/asan/pgmedic: $(ASAN_OBJS) build/asan/obj/src/main.o
	$(CC) $(ASAN_CFLAGS) -pthread -o $@ $^ $(PKG_LIBS) -lm

build/asan/test_%: tests/unit/test_%.c $(ASAN_OBJS)
	$(CC) $(CFLAGS_COMMON) $(ASAN_CFLAGS) -Itests/unit -o $@ $^ $(PKG_LIBS) $(shell pkg-config --libs cmocka) -lm

asan: build/asan/pgmedic

UNIT_BINS := $(UNIT_SRCS:tests/unit/test_%.c=build/asan/test_%)

unit: setup $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 $$t; done

# The suite runs twice: with one event loop and with `workers = 2` (conftest.py sets
# workers explicitly: the default, auto, depends on the machine).
integration: setup build/asan/pgmedic build/pgmedic
	PGMEDIC_BIN=$(CURDIR)/build/asan/pgmedic /usr/bin/python3 -m pytest -q tests/integration $(PYTEST_ARGS)
	PGMEDIC_TEST_WORKERS=2 PGMEDIC_BIN=$(CURDIR)/build/asan/pgmedic /usr/bin/python3 -m pytest -q tests/integration $(PYTEST_ARGS)

test: setup
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory sqldiff
	@$(MAKE) --no-print-directory fuzz-smoke
	@$(MAKE) --no-print-directory integration

demo: setup build/pgmedic
	./scripts/demo.sh

bench: setup build/pgmedic
	./bench/pooling.sh

# The profiler's cost: pgmedic with profiling on vs off (and vs PgBouncer), -S only;
# pgmedic with its default workers (auto) unless PGMEDIC_WORKERS says otherwise.
.PHONY: bench-profiling
bench-profiling: setup build/pgmedic
	WORKLOADS="select_simple select_extended select_tagged" DIRECT_TARGET=$${DIRECT_TARGET:-0} \
		ROUNDS=$${ROUNDS:-12} DURATION=$${DURATION:-5} ./bench/pooling.sh

# The proxies' own instructions per transaction (callgrind): stable on a busy machine.
.PHONY: bench-instructions
bench-instructions: setup build/pgmedic
	./bench/instructions.sh

scale: setup build/pgmedic
	./bench/scale.sh

soak: setup build/pgmedic
	./bench/soak.sh

FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/fuzz_%.c=build/fuzz/fuzz_%)
FUZZ_LIB_SRCS := $(filter src/pg/% src/core/% src/sql/%,$(LIB_SRCS))
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIB_SRCS)
	@mkdir -p build/fuzz
	clang $(CFLAGS_COMMON) -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -o $@ $^ $(PKG_LIBS) -lm

# Short, bounded run of every fuzz target over its committed corpus (part of make test).
fuzz-smoke: $(FUZZ_BINS)
	@set -e; for f in $(FUZZ_BINS); do n=$${f##*/fuzz_}; echo "== fuzz $$n"; \
	  mkdir -p build/fuzz/corpus-$$n; \
	  $$f -max_total_time=$${FUZZ_SMOKE_SECONDS:-10} -print_final_stats=1 build/fuzz/corpus-$$n tests/fuzz/corpus/$$n 2>&1 | grep -E 'stat::number_of_executed_units|ERROR|SUMMARY' ; \
	  test $${PIPESTATUS[0]:-0} -eq 0; done

# `make fuzz FUZZ_SECONDS=3600` runs every target for as long as asked.
fuzz: $(FUZZ_BINS)
	@set -e; for f in $(FUZZ_BINS); do n=$${f##*/fuzz_}; mkdir -p build/fuzz/corpus-$$n; \
	  $$f -max_total_time=$${FUZZ_SECONDS:-300} -print_final_stats=1 build/fuzz/corpus-$$n tests/fuzz/corpus/$$n; done

# Differential test of the SQL normalizer against libpg_query over tests/sql_corpus.
.PHONY: sqldiff bench-normalize
build/asan/sqldiff: tests/sqldiff/sqldiff.c src/sql/normalize.c src/sql/normalize.h
	@mkdir -p build/asan
	$(CC) $(CFLAGS_COMMON) $(ASAN_CFLAGS) -o $@ tests/sqldiff/sqldiff.c src/sql/normalize.c $(PKG_LIBS) -lm

sqldiff: build/asan/sqldiff
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 build/asan/sqldiff tests/sql_corpus/*.jsonl

# Byte-identity of src/sql/normalize.c with its version at NORM_BASE (a git
# revision, HEAD by default), for changes meant to keep every output: both are
# linked into one program (the old one's functions renamed old_*) and compared
# over tests/sql_corpus, the fuzz corpus, prefixes and mutations.
# `make normident-bench` instead times the two, interleaved (and pg_query_normalize).
NORM_BASE ?= HEAD
OLD_RENAME := -Dsql_normalize=old_sql_normalize -Dsql_redact=old_sql_redact -Dsql_tag_decode=old_sql_tag_decode \
	      -Dsql_comment_tags=old_sql_comment_tags
.PHONY: normident normident-bench
build/normident-base.c: FORCE
	@mkdir -p build
	@git show $(NORM_BASE):src/sql/normalize.c > $@.tmp && { cmp -s $@.tmp $@ || mv $@.tmp $@; }; rm -f $@.tmp

build/asan/normident: tests/sqldiff/normident.c src/sql/normalize.c src/sql/normalize.h build/normident-base.c
	@mkdir -p build/asan
	$(CC) $(CFLAGS_COMMON) $(ASAN_CFLAGS) $(OLD_RENAME) -c build/normident-base.c -o build/asan/normident-base.o
	$(CC) $(CFLAGS_COMMON) $(ASAN_CFLAGS) -o $@ tests/sqldiff/normident.c src/sql/normalize.c build/asan/normident-base.o $(PKG_LIBS) -lm

normident: build/asan/normident
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 build/asan/normident tests/sql_corpus/*.jsonl tests/fuzz/corpus/normalize/*

build/normident-bench: tests/sqldiff/normident.c src/sql/normalize.c src/sql/normalize.h build/normident-base.c
	$(CC) $(CFLAGS_COMMON) -O2 -DNDEBUG $(OLD_RENAME) -c build/normident-base.c -o build/normident-base.o
	$(CC) $(CFLAGS_COMMON) -O2 -DNDEBUG -DWITH_PG_QUERY -o $@ tests/sqldiff/normident.c src/sql/normalize.c build/normident-base.o $(PKG_LIBS) -lm

normident-bench: build/normident-bench
	taskset -c 1 build/normident-bench --bench 5 tests/sql_corpus/*.jsonl

# The same comparison on generated input (tests/sqldiff/normrand.c): a token
# soup with the list shapes, comments and quoted runs the fast paths take,
# NORMRAND_N inputs (about a million in 10 s), optimized build.
NORMRAND_N ?= 2000000
.PHONY: normrand
build/normrand: tests/sqldiff/normrand.c src/sql/normalize.c src/sql/normalize.h build/normident-base.c
	$(CC) $(CFLAGS_COMMON) -O2 $(OLD_RENAME) -c build/normident-base.c -o build/normrand-base.o
	$(CC) $(CFLAGS_COMMON) -O2 -o $@ tests/sqldiff/normrand.c src/sql/normalize.c build/normrand-base.o $(PKG_LIBS) -lm

normrand: build/normrand
	$(if $(shell command -v taskset),taskset -c 1 )build/normrand $(NORMRAND_N)

.PHONY: FORCE
FORCE:

# Normalizations per second, pgmedic next to pg_query_normalize (not a test).
build/normalize_bench: bench/normalize_bench.c src/sql/normalize.c src/sql/normalize.h src/sql/shape.c src/sql/shape.h
	@mkdir -p build
	$(CC) $(CFLAGS_COMMON) -O2 -DNDEBUG -o $@ bench/normalize_bench.c src/sql/normalize.c src/sql/shape.c $(PKG_LIBS) -lm

# Pinned to one core (the second one: the first takes most interrupts) when
# taskset exists, so that the scheduler moving it is not part of the number.
bench-normalize: build/normalize_bench
	$(if $(shell command -v taskset),taskset -c 1 )build/normalize_bench

clean:
	rm -rf build

-include $(DEPS)
