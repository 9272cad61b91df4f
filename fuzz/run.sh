#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 20: the smoke run `make test` does).
#   fuzz/run.sh [SECONDS] [TARGET...]      (make fuzz: 300 s each)
# The corpus grows in fuzz/corpus/<target> (not committed), starting from fuzz/seeds/<target>.
# A crash stops the run with the input saved under fuzz/artifacts/<target>/: turn it into a
# unit test, then fix the cause.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-20}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(config jwt signatures paths cidr webdis flow rsa_pkcs1 ecdsa ed25519)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
# cargo-fuzz needs nightly's -Z flags: nightly when installed, else the stable compiler with
# its nightly features unlocked (the sanitizer runtimes ship with both).
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  echo "fuzz: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1"
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
"${fuzz[@]}" build --release >/dev/null
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  cp -n "seeds/$target"/* "corpus/$target/" 2>/dev/null || true
  log=$(mktemp)
  if ! "${fuzz[@]}" run --release "$target" "corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz: $target FAILED (input saved under fuzz/artifacts/$target/)"
    exit 1
  fi
  echo "fuzz: $target $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log" || echo 'ran')"
  rm -f "$log"
done
