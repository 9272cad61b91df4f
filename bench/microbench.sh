#!/usr/bin/env bash
# Each core step timed natively and inside V8 (node's WASI running the wasm32-wasip1 build of
# examples/microbench.rs), with the factor between them: where the filter's time goes, and
# which steps wasm slows most. A benchmark, not a test.
#   make microbench                  (BUDGET_MS=300: time spent on each step, per side)
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET_MS=${BUDGET_MS:-300}
command -v node >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs >/dev/null; }
cargo build --quiet --release --example microbench
cargo build --quiet --release --target wasm32-wasip1 --example microbench
native=$(target/release/examples/microbench "$BUDGET_MS")
wasm=$(node --no-warnings bench/wasi-run.mjs target/wasm32-wasip1/release/examples/microbench.wasm "$BUDGET_MS")
echo "core steps: native $(rustc --version | cut -d' ' -f2) vs V8 (node $(node --version), WASI), $(nproc) cores"
python3 - "$native" "$wasm" <<'PY'
import sys
native = dict(l.split("\t") for l in sys.argv[1].splitlines())
wasm = dict(l.split("\t") for l in sys.argv[2].splitlines())
print(f"\n{'step':<38} {'native us':>10} {'wasm us':>10} {'wasm/native':>12}")
for step, ns in native.items():
    n, w = float(ns) / 1000, float(wasm[step]) / 1000
    print(f"{step:<38} {n:>10.2f} {w:>10.2f} {w / n:>12.1f}")
PY
