#!/usr/bin/env bash
# Whole-process benchmark of `plow-processor enrich` (the offline mode: the same pure core as the
# streaming mode, without Kafka): events per second per core with JSON output, on a realistic
# corpus. Not part of CI; results go to BENCHMARKS.md ("Enrichment (processor)").
#
#   scripts/bench-processor.sh
#
# Corpus: BENCH_LINES canonical tracker lines (processor/test_data/gen.py --corpus; default
# 200000 lines ≈ 330 MB, 240,000 events: page views and structured events with a `co` of two
# entities, page pings and base64 self-describing events with `cx`, tp2 POSTs of three events),
# or the file BENCH_INPUT. Two configurations: "none" (every enrichment `enabled = false`: parse,
# tracker protocol, atomic fields, JSON) and "defaults" (an empty config: user agent, bot,
# referer with the built-in table, campaign, fingerprint). Good events and bad rows go to
# /dev/null, so the kernel's page-cache writes are not counted.
#
# Each of BENCH_ROUNDS rounds (3) runs every binary once per configuration, interleaved, under
# /usr/bin/time; events/s per core = events / user CPU seconds (the process is single-threaded
# apart from the output writer's I/O). Printed: user/sys/wall seconds, peak RSS, events/s per core.
#
# Environment: BENCH_LINES (200000), BENCH_INPUT (an existing log instead of generating one),
# BENCH_ROUNDS (3), BENCH_PROCESSOR_BINS (space-separated binaries to compare, e.g. an older
# build; default: builds this tree's release binary), BENCH_KEEP=1 keeps the temp dir.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
LINES=${BENCH_LINES:-200000}
ROUNDS=${BENCH_ROUNDS:-3}

note() { printf 'bench-processor: %s\n' "$*" >&2; }
die() {
    printf 'bench-processor: error: %s\n' "$*" >&2
    exit 1
}

[[ -x /usr/bin/time ]] || die "/usr/bin/time not found (apt-get install time)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-processor.XXXXXX")
cleanup() {
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        note "kept $WORK"
    else
        rm -rf -- "$WORK"
    fi
}
trap cleanup EXIT

if [[ -n ${BENCH_PROCESSOR_BINS:-} ]]; then
    read -r -a BINS <<<"$BENCH_PROCESSOR_BINS"
else
    note "building the release binary"
    (cd "$ROOT" && cargo build --release -q -p plowline-processor --bin plow-processor)
    TARGET=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    BINS=("$TARGET/release/plow-processor")
fi

INPUT=${BENCH_INPUT:-$WORK/corpus.log}
if [[ -z ${BENCH_INPUT:-} ]]; then
    note "generating $LINES canonical lines"
    python3 "$ROOT/processor/test_data/gen.py" --corpus "$LINES" "$INPUT"
fi
[[ -r $INPUT ]] || die "cannot read $INPUT"
note "corpus: $INPUT, $(wc -l <"$INPUT") lines, $(stat -c %s "$INPUT") bytes"

cat >"$WORK/none.toml" <<'EOF'
[enrichments.user_agent]
enabled = false
[enrichments.bot]
enabled = false
[enrichments.referer]
enabled = false
[enrichments.campaign]
enabled = false
[enrichments.fingerprint]
enabled = false
EOF
: >"$WORK/defaults.toml"

note "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
RESULTS=$WORK/results.tsv
: >"$RESULTS"
for round in $(seq "$ROUNDS"); do
    for config in none defaults; do
        for i in "${!BINS[@]}"; do
            bin=${BINS[$i]}
            /usr/bin/time -f '%U %S %e %M' -o "$WORK/time" \
                "$bin" enrich --config "$WORK/$config.toml" --input "$INPUT" \
                --output /dev/null --bad /dev/null 2>"$WORK/summary"
            events=$(sed -n 's/.* lines, \([0-9]*\) events, .*/\1/p' "$WORK/summary")
            [[ -n $events ]] || die "$bin: no summary line: $(tail -3 "$WORK/summary")"
            read -r user sys wall rss <"$WORK/time"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$i" "$config" "$round" "$events" \
                "$user" "$sys" "$wall" "$rss" >>"$RESULTS"
            note "round $round, $config, binary $i: $events events, user ${user} s"
        done
    done
done
note "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$RESULTS" "${BINS[@]}" <<'EOF'
import sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines()]
bins = sys.argv[2:]
print("| binary | enrichments | user CPU s (each round) | sys s | wall s | peak RSS MB | events/s per core (best; each) |")
print("|---|---|---|---|---|---|---|")
for i, name in enumerate(bins):
    for config in ("none", "defaults"):
        runs = [r for r in rows if r[0] == str(i) and r[1] == config]
        users = [float(r[4]) for r in runs]
        rates = [int(r[3]) / float(r[4]) for r in runs]
        print(f"| {name} | {config} | {', '.join(f'{u:.2f}' for u in users)} | "
              f"{max(float(r[5]) for r in runs):.2f} | {max(float(r[6]) for r in runs):.2f} | "
              f"{max(int(r[7]) for r in runs) / 1024:.0f} | {max(rates):,.0f} "
              f"({', '.join(f'{x:,.0f}' for x in rates)}) |")
EOF
