#!/usr/bin/env bash
# The operator as it was before issue 22's fair limiter, for the fairness benchmark's "before" row
# (examples/bench.rs reads its path from BENCH_BEFORE_BIN): commit $1, built once into directory $2.
# A plain release build from `git archive` of that commit (no worktree left behind), in the shared
# CARGO_TARGET_DIR: its dependencies are mostly the ones already built.
set -euo pipefail
commit=$1
out=$2
if [[ -x $out/connect-operator && $(cat "$out/commit" 2>/dev/null) == "$commit" ]]; then
    exit 0
fi
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
git archive "$commit" | tar -x -C "$src"
target=${CARGO_TARGET_DIR:-$HOME/.cache/connect-operator/cargo-target}
(cd "$src" && CARGO_TARGET_DIR=$target/bench-before cargo build --release --locked -p connect-operator --bin connect-operator)
mkdir -p "$out"
cp "$target/bench-before/release/connect-operator" "$out/connect-operator"
echo "$commit" >"$out/commit"
