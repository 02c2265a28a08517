# bench.mk — the cardgw benchmarks (make bench-*), included by the top-level Makefile.
# Scenarios are driven by bench/run.py; results go to bench/results.csv and bench/RESULTS.md.

BENCH_CFLAGS := -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -O2 -g
BENCH_PY     := /usr/bin/python3
BENCH_RUN    := $(BENCH_PY) bench/run.py
BENCH_ARGS   ?=

.PHONY: bench-build bench-connect bench-idle bench-fanout bench-cross-node bench-scale bench-floor \
        bench-peers bench-tsung bench-plot bench-all bench-profile bench-script \
        bench-presence bench-sdk-storm bench-history-bytes

build/bench/loadgen: bench/loadgen.c bench/hist.h
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) $< -o $@ $$(pkg-config --cflags --libs libuv hiredis libcrypto)

build/bench/floor: bench/floor.c
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) $< -o $@

bench-build: build/cardgw build/bench/loadgen build/bench/floor

bench-connect: bench-build
	$(BENCH_RUN) connect $(BENCH_ARGS)

bench-idle: bench-build
	$(BENCH_RUN) idle $(BENCH_ARGS)

bench-fanout: bench-build
	$(BENCH_RUN) fanout $(BENCH_ARGS)

bench-cross-node: bench-build
	$(BENCH_RUN) crossnode $(BENCH_ARGS)

# Redis and node CPU per delivery with 1 and 2 Redis shards, 1 and 2 nodes (2: behind HAProxy)
bench-scale: bench-build
	$(BENCH_RUN) scale $(BENCH_ARGS)

# presence on one 10,000-member group: Redis memory, refresh cost, presence replies
bench-presence: bench-build
	$(BENCH_RUN) presence $(BENCH_ARGS)

# /healthz latency while readers ask history / recovery of 50 x 1 MB publications
# (BENCH_ARGS="--bin OTHER_BUILD --rounds N --readers N" for a before/after comparison)
bench-history-bytes: build/cardgw
	$(BENCH_PY) bench/history_bytes.py $(BENCH_ARGS)

# a reconnect storm of JavaScript clients after a node restart (BENCH_ARGS="--clients N --mode kill|term")
bench-sdk-storm: build/cardgw
	node bench/sdk-storm.mjs $(BENCH_ARGS)

# Redis CPU per publish of scripts/publish.lua vs the script at a revision (BENCH_ARGS="REV ROUNDS")
bench-script:
	bench/script-cost.sh $(BENCH_ARGS)

bench-floor: bench-build
	$(BENCH_RUN) floor $(BENCH_ARGS)

bench-peers: bench-build
	$(BENCH_RUN) peers $(BENCH_ARGS)

bench-tsung: bench-build
	$(BENCH_RUN) tsung $(BENCH_ARGS)

bench-plot:
	bench/plot.sh

bench-all: bench-connect bench-idle bench-fanout bench-cross-node bench-floor bench-peers \
           bench-tsung bench-plot

# perf profile of the node under fan-out and its idle memory map (bench/out/perf-fanout.txt)
bench-profile: bench-build
	$(BENCH_RUN) profile --no-csv $(BENCH_ARGS)
