#!/usr/bin/env bash
# Eddy's fuzz stage (docs/fuzzing.md): builds every cargo-fuzz target of fuzz/ on the stable
# toolchain and runs each for EDDY_FUZZ_SECS seconds (default 8) on a temporary copy of its
# committed corpus (fuzz/corpus/<target>/), so a run never writes into the checkout. Fails if
# any target crashes, fails an assertion, leaks or times out; the input that did it is kept in
# $EDDY_FUZZ_ARTIFACTS (default ~/.cache/eddy/fuzz-artifacts) and printed as base64.
#
#   bash scripts/fuzz.sh                      # every target, 8 s each (CI)
#   EDDY_FUZZ_SECS=600 bash scripts/fuzz.sh invoice musig   # longer, some targets
#   EDDY_FUZZ_MERGE=1 bash scripts/fuzz.sh    # also merge new coverage into fuzz/corpus/
#   EDDY_FUZZ_BUILD_ONLY=1 bash scripts/fuzz.sh
#
# Stable only: cargo-fuzz's coverage instrumentation (-Cpasses=sancov-module, -Cllvm-args) is
# made of stable rustc flags; only the sanitizers need nightly (-Zsanitizer), so the targets
# are built with `--sanitizer none` (Eddy is safe Rust: the assertions and debug-assertion
# overflow checks, `--debug-assertions`, are what find bugs).
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${EDDY_FUZZ_SECS:-8}"
tools="${EDDY_TOOLS_DIR:-$HOME/.cache/eddy/tools}"
build_dir="${EDDY_FUZZ_TARGET_DIR:-$HOME/.cache/eddy/fuzz-target}"
artifacts="${EDDY_FUZZ_ARTIFACTS:-$HOME/.cache/eddy/fuzz-artifacts}"
export PATH="$tools/bin:$PATH"
# The fuzz crate is its own workspace with its own build dir; never the main one's.
unset CARGO_TARGET_DIR

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz into $tools"
    cargo install cargo-fuzz --locked --root "$tools"
fi

fuzz() { cargo fuzz "$@"; }
flags=(--sanitizer none --debug-assertions --target-dir "$build_dir")

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(fuzz list)
fi

echo "== fuzz crate formatting"
cargo fmt --manifest-path fuzz/Cargo.toml -- --check

echo "== cargo fuzz build (${#targets[@]} targets; $(rustc --version); --sanitizer none --debug-assertions)"
start=$(date +%s)
fuzz build "${flags[@]}"
echo "   built in $(($(date +%s) - start)) s"
[ -n "${EDDY_FUZZ_BUILD_ONLY:-}" ] && exit 0

host=$(rustc -vV | sed -n 's/^host: //p')
bin="$build_dir/$host/release"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$artifacts"

failed=()
for t in "${targets[@]}"; do
    mkdir -p "$work/$t"
    if [ -d "fuzz/corpus/$t" ]; then cp -r "fuzz/corpus/$t/." "$work/$t/"; fi
    log="$work/$t.log"
    if "$bin/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$artifacts/$t-" "$work/$t" >"$log" 2>&1; then
        done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
        echo "   ok   $t: ${done_line:-no DONE line}"
        if [ -n "${EDDY_FUZZ_MERGE:-}" ]; then
            mkdir -p "fuzz/corpus/$t"
            "$bin/$t" -merge=1 "fuzz/corpus/$t" "$work/$t" >/dev/null 2>&1
            echo "        merged: $(find "fuzz/corpus/$t" -type f | wc -l) files in fuzz/corpus/$t"
        fi
    else
        echo "   FAIL $t"
        grep -E 'panicked at|SUMMARY|Test unit written|^thread' "$log" | head -20 || true
        tail -40 "$log"
        crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        if [ -n "$crash" ] && [ -f "$crash" ]; then
            echo "   input (base64): $(base64 -w0 "$crash")"
            echo "   reproduce: cargo fuzz run ${flags[*]} $t $crash"
        fi
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "== fuzzing FAILED: ${failed[*]}"
    exit 1
fi
echo "== fuzzing: ${#targets[@]} targets, ${secs} s each, no failure"
