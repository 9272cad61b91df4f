#!/usr/bin/env bash
# Instructions per operation of each core step (examples/microbench.rs), counted natively by
# callgrind: deterministic, so a change's effect on the filter's own code can be read exactly on
# a VM whose timings move by more than that effect. A benchmark, not a test; x86-64 instructions
# of the native build, not wasm's, so it compares builds, not hosts.
#   make instructions                 (ITERS=200: operations counted per step)
#   BASELINE=<commit> make instructions   (the same steps at another commit, side by side)
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=${ITERS:-200}
command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
work=$(mktemp -d)
trap 'rm -rf "$work"; [[ -z ${BASELINE:-} ]] || git worktree remove --force "$work-baseline" 2>/dev/null || true' EXIT

# Prints "<step>\t<instructions per operation>" for the tree in $1.
count() {
  # Symbols kept (the release profile strips them) so callgrind can find `measured`; its own
  # target directory, so this build does not replace make microbench's.
  (cd "$1" && CARGO_PROFILE_RELEASE_STRIP=false CARGO_TARGET_DIR="$PWD/target/instructions" \
    cargo build --quiet --release --example microbench)
  local out=$work/$2
  mkdir -p "$out"
  # Collection runs only inside `measured` (one call per step) and is dumped as it returns:
  # one dump per step, in the order the steps print.
  MICROBENCH_ITERS=$ITERS valgrind --tool=callgrind --collect-atstart=no \
    --toggle-collect='microbench::measured' --dump-after='microbench::measured' \
    --callgrind-out-file="$out/cg" "$1/target/instructions/release/examples/microbench" \
    > "$out/steps" 2> "$out/valgrind.log" || { cat "$out/valgrind.log" >&2; exit 1; }
  python3 - "$out" "$ITERS" <<'PY'
import glob, os, re, sys
out, iters = sys.argv[1], int(sys.argv[2])
steps = [l.split("\t")[0] for l in open(os.path.join(out, "steps")) if "\t" in l]
dumps = sorted(glob.glob(os.path.join(out, "cg.*")), key=lambda p: int(p.rsplit(".", 1)[1]))
if len(dumps) != len(steps):
    sys.exit(f"{len(dumps)} callgrind dumps for {len(steps)} steps")
for step, dump in zip(steps, dumps):
    total = next(int(m.group(1)) for m in map(re.compile(r"^(?:summary|totals): (\d+)").match, open(dump)) if m)
    print(f"{step}\t{total / iters:.0f}")
PY
}

count "$PWD" this > "$work/this.tsv"
if [[ -n ${BASELINE:-} ]]; then
  git worktree add --quiet --detach "$work-baseline" "$BASELINE"
  count "$work-baseline" baseline > "$work/baseline.tsv"
fi
echo "instructions per operation (x86-64, callgrind), $ITERS operations per step, $(git rev-parse --short HEAD)$([[ -n $(git status --porcelain -- src examples) ]] && echo ' with changes')${BASELINE:+ against $BASELINE}"
python3 - "$work/this.tsv" "${BASELINE:+$work/baseline.tsv}" <<'PY'
import sys
this = dict(l.rstrip("\n").split("\t") for l in open(sys.argv[1]))
base = dict(l.rstrip("\n").split("\t") for l in open(sys.argv[2])) if len(sys.argv) > 2 and sys.argv[2] else {}
for step, n in this.items():
    if step in base:
        b, t = int(base[step]), int(n)
        print(f"{step:<48} {b:>12} {t:>12} {t - b:>+10} ({(t - b) / b:+.1%})")
    else:
        print(f"{step:<48} {int(n):>12}")
PY
