#!/usr/bin/env bash
# Whole-process benchmark of `plow-processor load clickhouse --input` against the server's own
# limit: `clickhouse-client` inserting the same rows as JSONEachRow, in the same run, into a
# ClickHouse started here (scripts/services.sh) on loopback. Not part of CI; results go to
# BENCHMARKS.md ("ClickHouse loader").
#
#   scripts/bench-loader.sh
#
# 1. Corpus: BENCH_LINES canonical tracker lines (processor/test_data/gen.py --corpus; default
#    850000 lines, ≈1.02M events: tp2 POST lines carry 3), enriched by `plow-processor enrich`
#    into an NDJSON file of enriched events (the loader's input).
# 2. A warm-up load into a scratch table, whose rows are exported with `SELECT * … FORMAT
#    JSONEachRow`: the same rows, in the table's shape, for the baseline.
# 3. BENCH_ROUNDS rounds (default 2), each into fresh tables of the same schema (with its
#    materialized views): the loader (wall time of the whole process: read, decode, encode,
#    insert) and `clickhouse-client --query "INSERT … FORMAT JSONEachRow" < rows`. Each round
#    checks `count() … FINAL` = the events loaded. Rows/s of each, and the ratio, are printed.
#
# Both write 100000 rows per insert (the loader's clickhouse.max_insert_rows, clickhouse-client's
# --max_insert_block_size; a block of a million rows of this width exceeds the server's default
# memory limit), and the loader's batch is one insert (batch.max_events = 100000); with --input
# the loader keeps two batches in flight, so the next one streams while the server finishes the
# previous. The rounds alternate which writer goes first.
#
# Environment: BENCH_LINES (850000), BENCH_ROUNDS (2), BENCH_INSERT_ROWS (rows per insert,
# 100000), BENCH_BATCH_EVENTS (the loader's batch, 100000), BENCH_EVENTS (an existing NDJSON
# file of enriched events to use instead of generating one), BENCH_KEEP=1 keeps the temp dir.
# Builds the release binary first.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
LINES=${BENCH_LINES:-850000}
ROUNDS=${BENCH_ROUNDS:-2}
INSERT_ROWS=${BENCH_INSERT_ROWS:-100000}
BATCH_EVENTS=${BENCH_BATCH_EVENTS:-100000}

note() { printf 'bench-loader: %s\n' "$*" >&2; }
die() {
    printf 'bench-loader: error: %s\n' "$*" >&2
    exit 1
}

command -v clickhouse-client >/dev/null || die "clickhouse-client not found (scripts/services.sh install)"
command -v python3 >/dev/null || die "python3 not found"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-loader.XXXXXX")
cleanup() {
    "$ROOT/scripts/services.sh" stop "$WORK/services" >/dev/null 2>&1 || true
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        note "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

note "building the release binary"
(cd "$ROOT" && cargo build --release --quiet -p plowline-processor)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release/plow-processor
[[ -x $BIN ]] || die "$BIN not built"

note "starting ClickHouse under $WORK/services"
"$ROOT/scripts/services.sh" start "$WORK/services" clickhouse >"$WORK/services.env"
# shellcheck disable=SC1091
. "$WORK/services.env"
TCP_PORT=${PLOWLINE_CLICKHOUSE_TCP##*:}
ch() { clickhouse-client --port "$TCP_PORT" "$@"; }

if [[ -n ${BENCH_EVENTS:-} ]]; then
    ln -s "$(realpath "$BENCH_EVENTS")" "$WORK/events.ndjson"
else
    note "corpus: $LINES lines"
    python3 "$ROOT/processor/test_data/gen.py" --corpus "$LINES" "$WORK/corpus.log"
    "$BIN" enrich --input "$WORK/corpus.log" --output "$WORK/events.ndjson" 2>"$WORK/enrich.log"
    rm "$WORK/corpus.log"
fi
EVENTS=$(wc -l <"$WORK/events.ndjson")
note "$EVENTS enriched events, $(du -hL "$WORK/events.ndjson" | cut -f1)"

# config DATABASE: a loader configuration for the table DATABASE.events.
config() {
    cat >"$WORK/$1.toml" <<EOF
[batch]
max_events = $BATCH_EVENTS
max_bytes = 1073741824
[clickhouse]
url = "$PLOWLINE_CLICKHOUSE_URL"
database = "$1"
table = "events"
create_schema = true
max_insert_rows = $INSERT_ROWS
EOF
    printf '%s\n' "$WORK/$1.toml"
}

# schema DATABASE: creates DATABASE.events and its views.
schema() {
    "$BIN" schema clickhouse --config "$(config "$1")" | ch --multiquery
}

# count DATABASE: distinct events in DATABASE.events.
count() { ch --query "SELECT count() FROM $1.events FINAL"; }

seconds() { date +%s.%N; }

note "warm-up load and export of the rows as JSONEachRow"
"$BIN" load clickhouse --config "$(config warmup)" --input "$WORK/events.ndjson" 2>"$WORK/warmup.log"
[[ $(count warmup) == "$EVENTS" ]] || die "warm-up loaded $(count warmup) of $EVENTS events"
ch --query "SELECT * FROM warmup.events FORMAT JSONEachRow" >"$WORK/rows.json"
ch --query "DROP DATABASE warmup"
note "rows: $(du -h "$WORK/rows.json" | cut -f1)"

# run_loader ROUND: loads into loader_ROUND; prints seconds.
run_loader() {
    local db="loader_$1" start end
    config "$db" >/dev/null
    start=$(seconds)
    "$BIN" load clickhouse --config "$WORK/$db.toml" --input "$WORK/events.ndjson" 2>"$WORK/$db.log"
    end=$(seconds)
    [[ $(count "$db") == "$EVENTS" ]] || die "the loader loaded $(count "$db") of $EVENTS"
    ch --query "DROP DATABASE $db"
    echo "$end - $start" | bc -l
}

# run_client ROUND: inserts rows.json into client_ROUND; prints seconds.
run_client() {
    local db="client_$1" start end
    schema "$db"
    start=$(seconds)
    ch --max_insert_block_size="$INSERT_ROWS" --query "INSERT INTO $db.events FORMAT JSONEachRow" \
        <"$WORK/rows.json"
    end=$(seconds)
    [[ $(count "$db") == "$EVENTS" ]] || die "clickhouse-client inserted $(count "$db") of $EVENTS"
    ch --query "DROP DATABASE $db"
    echo "$end - $start" | bc -l
}

printf '%-6s %-18s %10s %12s\n' round writer seconds rows/s
total_loader=0
total_client=0
for round in $(seq "$ROUNDS"); do
    if ((round % 2 == 1)); then
        loader_s=$(run_loader "$round")
        client_s=$(run_client "$round")
    else
        client_s=$(run_client "$round")
        loader_s=$(run_loader "$round")
    fi
    printf '%-6s %-18s %10.2f %12.0f\n' "$round" plow-processor "$loader_s" \
        "$(echo "$EVENTS / $loader_s" | bc -l)"
    printf '%-6s %-18s %10.2f %12.0f\n' "$round" clickhouse-client "$client_s" \
        "$(echo "$EVENTS / $client_s" | bc -l)"
    total_loader=$(echo "$total_loader + $loader_s" | bc -l)
    total_client=$(echo "$total_client + $client_s" | bc -l)
done
printf 'events: %d; loader %.0f rows/s, clickhouse-client JSONEachRow %.0f rows/s; ratio %.2f\n' \
    "$EVENTS" "$(echo "$EVENTS * $ROUNDS / $total_loader" | bc -l)" \
    "$(echo "$EVENTS * $ROUNDS / $total_client" | bc -l)" \
    "$(echo "$total_client / $total_loader" | bc -l)"
