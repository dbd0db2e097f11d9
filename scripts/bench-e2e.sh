#!/usr/bin/env bash
# End-to-end latency benchmark: `tests/e2e.rs` (real tracker → nginx → plow-shipper → Tansu →
# plow-processor → ClickHouse and the Elasticsearch test server) on release binaries, at a steady
# rate, printing p50/p90/p99/max from hit to queryable row. Not part of CI; results go to
# BENCHMARKS.md ("End to end (hit → queryable row)").
#
#   scripts/bench-e2e.sh
#
# Uses the ClickHouse of PLOWLINE_CLICKHOUSE_URL when set (e.g. `. DIR/env` of a running
# `scripts/services.sh start DIR`), else starts one of its own with scripts/services.sh and stops
# it at the end. The test starts its own nginx and Tansu (memory storage).
#
# Environment: BENCH_RATE (hits/s, 2000), BENCH_SECONDS (45), PLOWLINE_E2E_BATCH_WAIT_MS (the
# loaders' batch.max_wait_ms, 200), BENCH_KEEP=1 keeps the services
# directory of a ClickHouse started here.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
RATE=${BENCH_RATE:-2000}
SECONDS_=${BENCH_SECONDS:-45}

note() { printf 'bench-e2e: %s\n' "$*" >&2; }

cd "$ROOT"
note "building release binaries and the test"
cargo build --release --workspace --bins
cargo test --release --test e2e --no-run

if [[ -z ${PLOWLINE_CLICKHOUSE_URL:-} ]]; then
    services=$(mktemp -d -t plow-bench-e2e.XXXXXX)
    stop() {
        "$ROOT/scripts/services.sh" stop "$services" clickhouse >/dev/null || true
        [[ ${BENCH_KEEP:-} == 1 ]] || rm -rf "$services"
    }
    trap stop EXIT
    eval "$("$ROOT/scripts/services.sh" start "$services" clickhouse)"
fi

note "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
note "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
note "running tests/e2e.rs at ${RATE} hits/s for ${SECONDS_} s (release binaries)"
PLOWLINE_E2E_RATE=$RATE PLOWLINE_E2E_SECONDS=$SECONDS_ \
    cargo test --release --test e2e -- --nocapture
note "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
