# otpd — the two README commands and their helpers.
#
#   make run    install Debian packages, build (release), bootstrap a demo account
#               in ./otpd-data if the store is new, print the keys and curl commands,
#               and run otpd on 127.0.0.1:8080 in the foreground
#   make test   install Debian packages, build with ASan+UBSan and the test hooks,
#               check formatting, run the cmocka unit tests and the end-to-end tests;
#               ends with a plain "N passed, N failed" line (see scripts/test.sh)
#
# Both work as root on a fresh Debian 12; `make deps` is quick when everything is
# already installed.

SHELL := /bin/bash
.DEFAULT_GOAL := help

BUILD_DIR ?= build
DATA_DIR  ?= ./otpd-data
LISTEN    ?= 127.0.0.1:8080

.PHONY: help deps build run test bench bench-rss bench-ceiling bench-instructions clean

help:
	@echo "make run    build and start otpd on $(LISTEN) with a demo account (data in $(DATA_DIR))"
	@echo "make test   build with ASan+UBSan and run every test; ends with 'N passed, N failed'"
	@echo "make deps   install the Debian packages otpd needs (as root)"
	@echo "make build  release build into ./$(BUILD_DIR)"
	@echo "make bench  benchmarks against nginx on 127.0.0.1, ~4.5 min (bench/run.sh; docs/performance.md)"
	@echo "make bench-rss  server RSS with 1,000,000 live requests (opt-in, ~3-5 min)"
	@echo "make bench-ceiling  what each part of send and verify costs against nginx (opt-in, ~5 min)"
	@echo "make bench-instructions  instructions per send, verify and status read (callgrind) against bench/instructions.ref (~1 min)"
	@echo "make clean  remove build directories"

deps:
	@bash scripts/deps.sh

build:
	@if [ -f $(BUILD_DIR)/build.ninja ]; then \
	    meson setup --reconfigure $(BUILD_DIR) -Dbuildtype=release >/dev/null; \
	else \
	    rm -rf $(BUILD_DIR) && meson setup $(BUILD_DIR) -Dbuildtype=release; \
	fi
	ninja -C $(BUILD_DIR)

run: deps build
	@OTPD_BIN=$(BUILD_DIR)/src/otpd DATA_DIR=$(DATA_DIR) LISTEN=$(LISTEN) bash scripts/run-demo.sh

test: deps
	@bash scripts/test.sh

bench:
	@bash bench/run.sh

bench-rss:
	@bash bench/rss.sh

bench-ceiling:
	@bash bench/ceiling.sh

bench-instructions:
	@BENCH_PROFILE=callgrind bash bench/profile.sh

clean:
	rm -rf build build-test build-test-nohooks build-test-tsan build-bench
