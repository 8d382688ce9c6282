#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz/ and runs each for a bounded time.
#
#   tests/fuzz/run.sh [TARGET...]      fuzz (default: every fuzz_*.c), one after another
#   tests/fuzz/run.sh --repro [TARGET...]
#                                      replay tests/fuzz/crashes/<target>/* on a build
#                                      without the harness' known-bug skips
#                                      (-DFUZZ_NO_SKIPS), and build and run every
#                                      tests/fuzz/crashes/*/repro_*.c (the cases named
#                                      on its REPRO-CASES line; cases marked mysql need
#                                      DBPOOL_TEST_MYSQL_URL): fails while a bug is unfixed
#
# Environment:
#   FUZZ_SECONDS   time per target (default 30), passed as -max_total_time
#   FUZZ_TIMEOUT   seconds one input may take before it counts as a hang (default 10)
#   FUZZ_OUT       build and work directory (default build/fuzz)
#   CC_FUZZ        compiler (default clang)
#
# Each target is built with clang -g -O1 -fsanitize=fuzzer,address,undefined
# (UBSan not recoverable, LeakSanitizer on), started from a fresh copy of its
# seed corpus (tests/fuzz/corpus/<target>/; the committed seeds are never
# written to) and run with -rss_limit_mb=2048. A crash, a leak, a hang, an
# out-of-memory or a failed check of the harness makes the script exit
# non-zero; the input is kept in $FUZZ_OUT/artifacts/<target>/ and the log in
# $FUZZ_OUT/logs/<target>.log. The summary gives executions and coverage per
# target.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
seconds="${FUZZ_SECONDS:-30}"
timeout="${FUZZ_TIMEOUT:-10}"
out="${FUZZ_OUT:-$repo/build/fuzz}"
cc="${CC_FUZZ:-clang}"

mode=fuzz
if [[ "${1:-}" == "--repro" ]]; then mode=repro; shift; fi

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    for f in "$here"/fuzz_*.c; do targets+=("$(basename "$f" .c)"); done
fi

command -v "$cc" >/dev/null || { echo "run.sh: $cc not found (apt-get install clang)" >&2; exit 2; }
# shellcheck disable=SC2207
libs=($(pkg-config --cflags --libs libmariadb libpq hiredis)) || { echo "run.sh: pkg-config libmariadb libpq hiredis failed" >&2; exit 2; }
cflags=(-std=c99 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
        -fno-sanitize-recover=all -Wall -Wextra -Wpedantic -Werror)

mkdir -p "$out/bin" "$out/logs"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

build() { # target extra-flags... -> binary path on stdout
    local t="$1" bin; shift
    bin="$out/bin/$t${1:+-noskip}"
    "$cc" "${cflags[@]}" "$@" -o "$bin" "$here/$t.c" "${libs[@]}" -lm >&2 || return 1
    echo "$bin"
}

failed=0
if [[ $mode == repro ]]; then
    for t in "${targets[@]}"; do
        dir="$here/crashes/$t"
        [[ -d "$dir" ]] || { echo "$t: no known crashes"; continue; }
        bin="$(build "$t" -DFUZZ_NO_SKIPS)" || exit 2
        for f in "$dir"/*; do
            [[ -f "$f" && "$f" != *.c && "$f" != *.md ]] || continue
            if "$bin" -timeout="$timeout" -rss_limit_mb=2048 "$f" >"$out/logs/$t-repro.log" 2>&1; then
                echo "$t: $(basename "$f"): passes (fixed)"
            else
                echo "$t: $(basename "$f"): FAILS - $(grep -m1 -E 'check failed|SUMMARY|ERROR' "$out/logs/$t-repro.log" || true)"
                failed=1
            fi
        done
    done
    if [[ $# -eq 0 ]]; then
        for src in "$here"/crashes/*/repro_*.c; do
            [[ -f "$src" ]] || continue
            name="$(basename "$src" .c)"
            bin="$out/bin/$name"
            cc -std=c99 -g -I"$repo" "$src" -o "$bin" "${libs[@]}" -lm || { failed=1; continue; }
            read -r -a cases <<<"$(sed -n 's/.*REPRO-CASES: *//p' "$src" | head -1 | sed 's/ *\*\/.*//')"
            [[ ${#cases[@]} -gt 0 ]] || cases=(-)
            for c in "${cases[@]}"; do
                arg="${c%%:*}"
                if [[ "$c" == *:mysql && -z "${DBPOOL_TEST_MYSQL_URL:-}" ]]; then
                    echo "$name $arg: skipped (needs DBPOOL_TEST_MYSQL_URL)"
                    continue
                fi
                [[ "$arg" == "-" ]] && arg=""
                rlog="$out/logs/$name${arg:+-$arg}.log"
                if timeout 60 "$bin" ${arg:+"$arg"} >"$rlog" 2>&1; then
                    echo "$name $arg: passes (fixed)"
                else
                    echo "$name $arg: FAILS - $(grep -v '^ *$' "$rlog" | tail -1)"
                    failed=1
                fi
            done
        done
    fi
    exit $failed
fi

summary=()
for t in "${targets[@]}"; do
    [[ -f "$here/$t.c" ]] || { echo "run.sh: no target $t" >&2; exit 2; }
    echo "== $t: build"
    bin="$(build "$t")" || exit 2
    work="$out/scratch/$t"
    arts="$out/artifacts/$t"
    rm -rf "$work"
    mkdir -p "$work" "$arts"
    log="$out/logs/$t.log"
    echo "== $t: fuzzing for ${seconds}s (log: $log)"
    set +e
    "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout="$timeout" -print_final_stats=1 \
        -artifact_prefix="$arts/" "$work" "$here/corpus/$t" >"$log" 2>&1
    rc=$?
    set -e
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    last="$(grep -E '^#[0-9]+' "$log" | grep -E 'cov: ' | tail -1 || true)"
    cov="$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")"
    ft="$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")"
    corp="$(sed -n 's/.*corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")"
    if [[ $rc -ne 0 ]]; then
        failed=1
        status="FAILED (exit $rc)"
        echo "== $t: FAILED, exit $rc"
        grep -E 'check failed|ERROR: |SUMMARY: |Test unit written' "$log" | head -5 || true
    else
        status=ok
    fi
    summary+=("$(printf '%-12s %-18s execs %-10s (%s/s)  cov %-5s ft %-6s corpus %s' \
        "$t" "$status" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}")")
done

echo
echo "== fuzz summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
exit $failed
