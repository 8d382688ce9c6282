# dbpool: build, test, bench, install.
#   make (all)          the Lua module, the C tests, the fault proxy, the C benchmarks
#   make build-tests    only the C test binaries (build/tests/*.t); runs nothing
#   make check T=FILE   one test, verbose, with only the servers it needs:
#                       tests/test_mysql.c, build/tests/test_mysql.t,
#                       tests/lua/test_lua_redis.lua, tests/cli/20_run.t, tests/soak.c
#   make test           start the test servers, run every test (plain build), stop them
#   make test-checked   the suites under AddressSanitizer+UBSan and Valgrind, the
#                       soak under ASan for SOAK_SEEDS, then fuzz-short
#   make fuzz-short     each libFuzzer target for FUZZ_SECONDS (30)
#   make soak           the fault soak (SOAK_SEED, SOAK_SECONDS) and the lifetime
#                       soak (LIFETIME_SECONDS), servers started too
#   make bench          the benchmarks against their peers (servers started too)
#   make check-header   the header alone, warning-free as C99 and C++
#   make install        dbpool.h, the Lua module and the dbpool command
CC ?= cc
PKGS := libmariadb libpq hiredis lua5.4
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
DB_LIBS := $(shell pkg-config --libs libmariadb libpq hiredis) -lm -lpthread
WARN := -Wall -Wextra -Wpedantic
CFLAGS ?= -O2 -g
BUILD := build
PROVE_OPTS := --timer --merge --failures --comments
PROVE := prove --exec '' $(PROVE_OPTS)

C_TESTS := $(patsubst tests/%.c,%,$(filter-out tests/faultproxy.c,$(wildcard tests/test_*.c)))
LUA_TESTS := $(sort $(wildcard tests/lua/*.lua))
CLI_TESTS := $(sort $(wildcard tests/cli/*.t))

PREFIX ?= /usr/local
LUA_LMOD ?= $(PREFIX)/share/lua/5.4
LUA_CMOD ?= $(PREFIX)/lib/x86_64-linux-gnu/lua/5.4

.PHONY: all build-tests tests build-bench lua bench check test test-plain test-checked test-asan test-asan-lua \
        test-valgrind test-valgrind-lua test-soak-asan fuzz-short soak clean install uninstall check-header
all: build-tests lua $(BUILD)/tests/faultproxy $(BUILD)/tests/soak_lifetimes build-bench

build-tests: $(addprefix $(BUILD)/tests/,$(addsuffix .t,$(C_TESTS)))

# The old name of build-tests, one letter from `make test`: say so rather than
# do nothing (tests/ is a directory, so make would call it up to date).
tests:
	@echo "make tests: no such target (make build-tests builds the C tests, make test runs them)" >&2; exit 2

# The C benchmarks, always optimised (a figure from an -O0 build means nothing).
BENCH_CFLAGS := -O2 -g
build-bench: $(BUILD)/bench/bench_mysql $(BUILD)/bench/bench_redis $(BUILD)/bench/bench_pgsql

$(BUILD)/bench/%: bench/%.c bench/bench_common.h dbpool.h
	@mkdir -p $(dir $@)
	$(CC) -std=c99 $(WARN) $(BENCH_CFLAGS) -I. $(PKG_CFLAGS) -o $@ $< $(DB_LIBS)

# The libzdb peer, kept out of all and build-bench: libzdb-dev comes only with
# `scripts/deps.sh --bench` (bench/run.sh builds this). dbpool's MySQL side is
# compiled in for its URL parser, hence libmariadb (libzdb links it anyway).
.PHONY: build-bench-zdb
build-bench-zdb: $(BUILD)/bench/bench_zdb

$(BUILD)/bench/bench_zdb: bench/bench_zdb.c bench/bench_common.h dbpool.h
	@pkg-config --exists zdb || { echo "$@: no libzdb (scripts/deps.sh --bench installs libzdb-dev)" >&2; exit 1; }
	@mkdir -p $(dir $@)
	$(CC) -std=c99 $(WARN) $(BENCH_CFLAGS) -I. $$(pkg-config --cflags zdb libmariadb) -o $@ $< \
	  $$(pkg-config --libs zdb libmariadb) -lpthread

$(BUILD)/tests/%.t: tests/%.c dbpool.h tests/tap.h tests/helpers.h tests/proxy.h
	@mkdir -p $(dir $@)
	$(CC) -std=c99 $(WARN) $(CFLAGS) -I. $(PKG_CFLAGS) -o $@ $< $(DB_LIBS)

lua: $(BUILD)/lua/dbpool/core.so

$(BUILD)/lua/dbpool/core.so: lua/dbpool_core.c dbpool.h
	@mkdir -p $(dir $@)
	$(CC) -std=c99 $(WARN) $(CFLAGS) -shared -fPIC -I. $(PKG_CFLAGS) -o $@ $< $(DB_LIBS)

# The module built with AddressSanitizer, for the checked Lua runs (LD_PRELOAD libasan).
$(BUILD)/asan/lua/dbpool/core.so: lua/dbpool_core.c dbpool.h
	@mkdir -p $(dir $@)
	clang -std=c99 $(WARN) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -shared -fPIC \
	  -I. $(PKG_CFLAGS) -o $@ $< $(DB_LIBS)

$(BUILD)/tests/faultproxy: tests/faultproxy.c
	@mkdir -p $(dir $@)
	$(CC) -std=c99 $(WARN) -O2 -o $@ $<

# The checked builds: one binary per test, instrumented.
# The tests and the module for Valgrind's memcheck: with DBPOOL_NO_RECYCLE,
# every op and result goes back to the allocator, so that memcheck sees one
# used after it was freed (a block kept on the hub for reuse is never freed).
$(BUILD)/vg/tests/%.t: tests/%.c dbpool.h tests/tap.h tests/helpers.h tests/proxy.h
	@mkdir -p $(dir $@)
	$(CC) -std=c99 $(WARN) $(CFLAGS) -DDBPOOL_NO_RECYCLE -I. $(PKG_CFLAGS) -o $@ $< $(DB_LIBS)

$(BUILD)/vg/lua/dbpool/core.so: lua/dbpool_core.c dbpool.h
	@mkdir -p $(dir $@)
	$(CC) -std=c99 $(WARN) $(CFLAGS) -DDBPOOL_NO_RECYCLE -shared -fPIC -I. $(PKG_CFLAGS) -o $@ $< $(DB_LIBS)

$(BUILD)/asan/tests/%.t: tests/%.c dbpool.h tests/tap.h tests/helpers.h tests/proxy.h
	@mkdir -p $(dir $@)
	clang -std=c99 $(WARN) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	  -fno-sanitize-recover=undefined -I. $(PKG_CFLAGS) -o $@ $< $(DB_LIBS)

# The header alone, warning-free as C99 and as C++, with each backend left out
# and without helper threads:
# exactly as the quick start says (nothing before it), and after a system
# header with _POSIX_C_SOURCE defined by the including file.
check-header:
	@mkdir -p $(BUILD)
	@printf '#define DBPOOL_IMPLEMENTATION\n#include "dbpool.h"\nint main(void){return 0;}\n' > $(BUILD)/hdr.c
	@printf '#define _POSIX_C_SOURCE 200809L\n#include <stdio.h>\n#define DBPOOL_IMPLEMENTATION\n#include "dbpool.h"\nint main(void){return 0;}\n' > $(BUILD)/hdr2.c
	$(CC) -std=c99 $(WARN) -Werror -I. $(PKG_CFLAGS) -c $(BUILD)/hdr.c -o $(BUILD)/hdr.o
	$(CC) -std=c99 $(WARN) -Werror -I. $(PKG_CFLAGS) -c $(BUILD)/hdr2.c -o $(BUILD)/hdr.o
	$(CC) -std=c99 $(WARN) -Werror -DDBPOOL_NO_MYSQL -I. $(PKG_CFLAGS) -c $(BUILD)/hdr.c -o $(BUILD)/hdr.o
	$(CC) -std=c99 $(WARN) -Werror -DDBPOOL_NO_REDIS -I. $(PKG_CFLAGS) -c $(BUILD)/hdr.c -o $(BUILD)/hdr.o
	$(CC) -std=c99 $(WARN) -Werror -DDBPOOL_NO_PGSQL -I. $(PKG_CFLAGS) -c $(BUILD)/hdr.c -o $(BUILD)/hdr.o
	$(CC) -std=c99 $(WARN) -Werror -DDBPOOL_NO_MYSQL -DDBPOOL_NO_REDIS -I. $(PKG_CFLAGS) -c $(BUILD)/hdr.c -o $(BUILD)/hdr.o
	$(CC) -std=c99 $(WARN) -Werror -DDBPOOL_NO_MYSQL -DDBPOOL_NO_PGSQL -I. $(PKG_CFLAGS) -c $(BUILD)/hdr.c -o $(BUILD)/hdr.o
	$(CC) -std=c99 $(WARN) -Werror -DDBPOOL_NO_THREADS -I. $(PKG_CFLAGS) -c $(BUILD)/hdr.c -o $(BUILD)/hdr.o
	cp $(BUILD)/hdr.c $(BUILD)/hdr.cpp
	c++ -std=c++11 $(WARN) -Werror -I. $(PKG_CFLAGS) -c $(BUILD)/hdr.cpp -o $(BUILD)/hdr.o
	clang -std=c99 $(WARN) -Werror -I. $(PKG_CFLAGS) -c $(BUILD)/hdr.c -o $(BUILD)/hdr.o

# One test (see scripts/check.sh): `make check T=tests/test_redis.c`.
check:
	@MAKE="$(MAKE)" scripts/check.sh "$(T)"

# The suites share the servers (and some stop or kill them): one at a time.
test: all check-header
	scripts/with-servers.sh $(MAKE) -j1 --no-print-directory test-plain

# (with a 24 s run of the lifetime soak: live objects and RSS flat; and a
# 12 s run of the fault soak on this build, where freed ops and results are
# reused (the checked builds turn the reuse off to see a use after free): a
# reused op answered with another's reply fails it)
test-plain: $(BUILD)/tests/soak
	$(PROVE) tests/faultproxy_selftest.sh $(addprefix $(BUILD)/tests/,$(addsuffix .t,$(C_TESTS))) $(LUA_TESTS) $(CLI_TESTS)
	SOAK_SECONDS=24 SOAK_REPORT=6 $(PROVE) $(BUILD)/tests/soak_lifetimes
	SOAK_SEED=1 SOAK_SECONDS=12 $(PROVE) $(BUILD)/tests/soak

# The checked job. It fuzzes too, by calling fuzz-short explicitly (after the
# servers are stopped: the fuzzers need none).
test-checked: all $(addprefix $(BUILD)/asan/tests/,$(addsuffix .t,$(C_TESTS))) $(BUILD)/asan/lua/dbpool/core.so $(BUILD)/asan/tests/soak \
              $(addprefix $(BUILD)/vg/tests/,$(addsuffix .t,$(C_TESTS))) $(BUILD)/vg/lua/dbpool/core.so
	scripts/with-servers.sh $(MAKE) -j1 --no-print-directory test-asan test-asan-lua test-valgrind test-valgrind-lua test-soak-asan
	$(MAKE) --no-print-directory fuzz-short

# Every libFuzzer target for FUZZ_SECONDS each (tests/fuzz/run.sh says more).
FUZZ_SECONDS ?= 30
fuzz-short:
	FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh

test-asan:
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(PROVE) $(addprefix $(BUILD)/asan/tests/,$(addsuffix .t,$(C_TESTS)))

# The Lua suites with the module built under ASan+UBSan (the interpreter is not
# instrumented: the runtime is preloaded; Lua's own allocations are not leaks).
ASAN_RT := $(shell clang -print-file-name=libclang_rt.asan-x86_64.so)
UBSAN_RT := $(shell clang -print-file-name=libclang_rt.ubsan_standalone-x86_64.so)
test-asan-lua:
	LD_PRELOAD=$(ASAN_RT) ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  LUA_CPATH="$(BUILD)/asan/lua/?.so;;" prove $(PROVE_OPTS) --exec 'lua5.4' $(LUA_TESTS)

VALGRIND := valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99
test-valgrind: $(addprefix $(BUILD)/vg/tests/,$(addsuffix .t,$(C_TESTS)))
	prove $(PROVE_OPTS) --exec '$(VALGRIND)' $(addprefix $(BUILD)/vg/tests/,$(addsuffix .t,$(C_TESTS)))

# The checked job's soak: under ASan+UBSan, a fixed list of seeds, a short run
# each (SOAK_SEEDS, SOAK_SECONDS), so that a failure in CI replays exactly
# with `SOAK_SEED=N make soak`. (prove shows only TAP: a sanitizer's report
# goes to a file, printed on failure.)
SOAK_SEEDS ?= 1 2 3 4 5 6
test-soak-asan:
	@rm -f $(BUILD)/asan/soak-report.*; fail=0; \
	for seed in $(SOAK_SEEDS); do \
	  SOAK_SEED=$$seed SOAK_SECONDS=$${SOAK_SECONDS:-10} \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:log_path=$(BUILD)/asan/soak-report \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$(BUILD)/asan/soak-report \
	  prove $(PROVE_OPTS) --exec '' $(BUILD)/asan/tests/soak \
	  || { echo "soak failed with SOAK_SEED=$$seed"; cat $(BUILD)/asan/soak-report.* 2>/dev/null; fail=1; }; \
	done; exit $$fail

test-valgrind-lua: $(BUILD)/vg/lua/dbpool/core.so
	LUA_CPATH="$(BUILD)/vg/lua/?.so;;" prove $(PROVE_OPTS) --exec '$(VALGRIND) lua5.4' $(LUA_TESTS)

install: lua
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(LUA_LMOD) $(DESTDIR)$(LUA_CMOD)/dbpool $(DESTDIR)$(PREFIX)/bin
	install -m 644 dbpool.h $(DESTDIR)$(PREFIX)/include/dbpool.h
	install -m 644 lua/dbpool.lua $(DESTDIR)$(LUA_LMOD)/dbpool.lua
	install -m 755 $(BUILD)/lua/dbpool/core.so $(DESTDIR)$(LUA_CMOD)/dbpool/core.so
	if [ -d lua/dbpool ]; then install -d $(DESTDIR)$(LUA_LMOD)/dbpool && \
	  for f in $$(cd lua && find dbpool -name '*.lua'); do install -D -m 644 lua/$$f $(DESTDIR)$(LUA_LMOD)/$$f; done; fi
	if [ -f scripts/dbpool ]; then install -m 755 scripts/dbpool $(DESTDIR)$(PREFIX)/bin/dbpool; fi

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/include/dbpool.h $(DESTDIR)$(LUA_LMOD)/dbpool.lua $(DESTDIR)$(PREFIX)/bin/dbpool
	rm -rf $(DESTDIR)$(LUA_CMOD)/dbpool $(DESTDIR)$(LUA_LMOD)/dbpool

$(BUILD)/tests/soak_lifetimes: tests/soak_lifetimes.c dbpool.h tests/tap.h tests/helpers.h
	@mkdir -p $(dir $@)
	$(CC) -std=c99 $(WARN) $(CFLAGS) -I. $(PKG_CFLAGS) -o $@ $< $(DB_LIBS)

$(BUILD)/tests/soak: tests/soak.c dbpool.h tests/tap.h tests/proxy.h tests/helpers.h
	@mkdir -p $(dir $@)
	$(CC) -std=c99 $(WARN) $(CFLAGS) -I. $(PKG_CFLAGS) -o $@ $< $(DB_LIBS)

$(BUILD)/asan/tests/soak: tests/soak.c dbpool.h tests/tap.h tests/proxy.h tests/helpers.h
	@mkdir -p $(dir $@)
	clang -std=c99 $(WARN) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	  -fno-sanitize-recover=undefined -I. $(PKG_CFLAGS) -o $@ $< $(DB_LIBS)

# Random faults under load for SOAK_SECONDS (120), then invariants. A random
# seed unless SOAK_SEED is given (a failing run prints the line that replays it).
# Then the lifetime soak for LIFETIME_SECONDS (600): RSS and live objects
# printed every minute, flat or it fails.
soak: all $(BUILD)/tests/soak
	SOAK_SEED=$${SOAK_SEED:-$$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')} \
	  scripts/with-servers.sh sh -c "prove $(PROVE_OPTS) --exec '' $(BUILD)/tests/soak && \
	  SOAK_SECONDS=$${LIFETIME_SECONDS:-600} prove $(PROVE_OPTS) --exec '' $(BUILD)/tests/soak_lifetimes"

bench: all
	scripts/with-servers.sh bench/run.sh

clean:
	rm -rf $(BUILD)
