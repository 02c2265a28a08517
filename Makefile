# cardgw — build, run, test, lint, fuzz and bench targets. `make run` and `make test` are the
# two commands a new user needs (README.md); both install missing Debian packages first.

PKGS    := libwebsockets libuv hiredis msgpack jansson libssl libcrypto
CC      ?= cc
CLANG   ?= clang
WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CSTD    := -std=gnu11 -D_GNU_SOURCE
INC     := -Iinclude -Ibuild/gen
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS))
CFLAGS  ?= -O2 -g
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

SRCS      := $(wildcard gateway/*.c) $(wildcard protocol/*.c)
LIB_SRCS  := $(filter-out gateway/main.c,$(SRCS))
OBJS      := $(SRCS:%.c=build/obj/%.o)
LIB_OBJS  := $(LIB_SRCS:%.c=build/obj/%.o)
ASAN_LIB_OBJS := $(LIB_SRCS:%.c=build/asan/%.o)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=build/asan/tests/%)
FUZZ_SRCS := $(filter-out gateway/%,$(LIB_SRCS)) gateway/common.c gateway/log.c gateway/schema.c \
             gateway/jwt.c gateway/api_body.c

# make test fuzzes this long after replaying the corpus; make fuzz runs long (300 s)
FUZZ_SECONDS ?= 15
STAMP := build/.deps-ok

.PHONY: all deps run demo test unit integration lint format fuzz fuzz-ci clean check-config bench
all: build/cardgw

# install-deps.sh is a fast no-op when everything is present; the stamp avoids even that
# within one checkout.
deps: $(STAMP)
$(STAMP): scripts/install-deps.sh
	@scripts/install-deps.sh
	@mkdir -p build && touch $@

# scripts/*.lua are the single source of the node's Lua scripts; the node embeds each as
# gw_<name>_lua from build/gen/<name>_lua.h.
LUA := $(wildcard scripts/*.lua)
GEN := $(LUA:scripts/%.lua=build/gen/%_lua.h)
# kept once made: as intermediate files make deleted them after each build, and the next change
# to any source (or a new commit, build/gen/commit) regenerated them and rebuilt every object
.SECONDARY: $(GEN)
build/gen/%_lua.h: scripts/%.lua
	@mkdir -p $(dir $@)
	@{ echo '/* generated from $< by the Makefile: do not edit */'; \
	   printf 'static const char gw_$*_lua[] =\n'; \
	   sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$$/\\n"/' $<; \
	   echo ';'; } > $@

HDRS := $(wildcard include/cardgw/*.h) $(wildcard protocol/*.h) $(wildcard gateway/*.h)

# cardgw_build_info{commit} (gateway/metrics.c): the checkout's commit, "unknown" outside git.
# build/gen/commit changes only when the commit does, so metrics.o is rebuilt only then.
GW_COMMIT := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
build/gen/commit: FORCE
	@mkdir -p $(dir $@)
	@echo '$(GW_COMMIT)' | cmp -s - $@ 2>/dev/null || echo '$(GW_COMMIT)' > $@
.PHONY: FORCE
METRICS_OBJS := build/obj/gateway/metrics.o build/asan/gateway/metrics.o
$(METRICS_OBJS): build/gen/commit
$(METRICS_OBJS): DEFS := -DGW_COMMIT='"$(GW_COMMIT)"'

build/obj/%.o: %.c $(STAMP) $(GEN) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(CFLAGS) $(DEFS) $(INC) $(PKG_CFLAGS) -c $< -o $@

build/asan/%.o: %.c $(STAMP) $(GEN) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -O1 -g $(SAN) $(DEFS) $(INC) $(PKG_CFLAGS) -c $< -o $@

build/cardgw: $(OBJS)
	$(CC) $(CFLAGS) -o $@ $(OBJS) $(PKG_LIBS) -lm

# The same node built with AddressSanitizer + UBSan + LeakSanitizer: integration tests run it,
# so every test that stops a node checks the shutdown path frees everything.
build/cardgw-asan: build/asan/gateway/main.o $(ASAN_LIB_OBJS)
	$(CC) $(SAN) -o $@ $^ $(PKG_LIBS) -lm

build/asan/tests/%: tests/unit/%.c $(ASAN_LIB_OBJS) tests/unit/testlib.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -O1 -g $(SAN) $(INC) -Itests/unit $(PKG_CFLAGS) $< $(ASAN_LIB_OBJS) \
	    -o $@ $(PKG_LIBS) -lm

build/fuzz_decode: tests/fuzz/fuzz_decode.c $(FUZZ_SRCS) $(STAMP) $(HDRS)
	$(CLANG) $(CSTD) -g -O1 -fsanitize=fuzzer,address,undefined $(INC) $(PKG_CFLAGS) \
	    tests/fuzz/fuzz_decode.c $(FUZZ_SRCS) -o $@ $(PKG_LIBS) -lm

run: deps build/cardgw
	@scripts/run-local.sh

# Redis, two nodes and the reference backend (examples/backend) for the card-exchange demo; the
# nodes serve build/demo: the page (examples/demo) and the JavaScript client (clients/js/src)
demo: deps build/cardgw build/demo
	@scripts/demo.sh

build/demo: $(wildcard examples/demo/* clients/js/src/*.js clients/js/src/plugins/*.js)
	@rm -rf $@ && mkdir -p $@/sdk
	cp examples/demo/* $@/
	cp -r clients/js/src/* $@/sdk/

# A deployment on loopback: HAProxy, CLUSTER_NODES nodes, CLUSTER_SHARDS Redis shards each with a
# replica and three Sentinels (scripts/cluster; state in build/cluster).
CLUSTER_NODES  ?= 3
CLUSTER_SHARDS ?= 2
.PHONY: cluster-up cluster-down cluster-status cluster-roll
cluster-up: deps build/cardgw
	@scripts/cluster up --nodes $(CLUSTER_NODES) --shards $(CLUSTER_SHARDS)
cluster-down:
	@scripts/cluster down
cluster-status:
	@scripts/cluster status
cluster-roll:
	@scripts/cluster roll
# The scale acceptance at full size (3,000 clients through HAProxy, 3 nodes, 2 shards, 10,000
# publications over 300 channels); make test runs it at a third of that.
.PHONY: test-scale
test-scale: deps build/cardgw-asan
	@CARDGW_SCALE=full /usr/bin/python3 -m pytest -q -s -p no:cacheprovider \
	    tests/integration/test_cluster.py -k scale

check-config: build/cardgw
	@build/cardgw --config config.example --check-config

unit: $(UNIT_BINS)
	@scripts/test.sh unit

# the vector-file checks and the node behaviours (pytest-xdist; scripts/test.sh says how many)
integration: deps build/cardgw-asan build/cardgw
	@scripts/test.sh vectors integration

fuzz: build/fuzz_decode
	@mkdir -p build/fuzz-corpus
	build/fuzz_decode -max_total_time=$${FUZZ_SECONDS:-300} -max_len=4096 \
	    build/fuzz-corpus tests/fuzz/corpus

fuzz-ci: build/fuzz_decode
	@FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/test.sh fuzz

lint: deps
	@scripts/lint.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

# Everything a change must pass: lint, C unit tests under ASan/UBSan, a corpus replay and a short
# fuzz run, the vector-file checks and the integration tests against real redis-server and node
# processes. The binaries are built on every core; the stages run side by side (scripts/test.sh).
# One count line per stage, one closing total line.
test: deps
	@$(MAKE) --no-print-directory -j$$(nproc) build/cardgw build/cardgw-asan $(UNIT_BINS) \
	    build/fuzz_decode
	@FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/test.sh all

clean:
	rm -rf build

# Benchmarks (make bench-*) live in bench/; see bench/RESULTS.md.
-include bench/bench.mk
