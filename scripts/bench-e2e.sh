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
# it at the end, its data in a new directory under TMPDIR (/tmp). The test starts its own nginx and
# Tansu (memory storage).
#
# Leave a few minutes between runs when TMPDIR is on ext4 without a journal (as on some virtual
# machines): there the kernel skips inodes freed in the last 60-360 s when it allocates new ones,
# checking each in the buffer cache, so after a run deletes its ClickHouse data (tens of thousands
# of part files) every file the next run's ClickHouse creates costs hundreds of microseconds of
# kernel time, and its inserts fall behind. `TMPDIR=/dev/shm` keeps ClickHouse's files in memory
# and avoids that; BENCHMARKS.md says which runs used it.
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
if [[ -n ${services:-} ]]; then
    note "ClickHouse data in $services ($(df --output=fstype "$services" | tail -1))"
fi
note "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
note "running tests/e2e.rs at ${RATE} hits/s for ${SECONDS_} s (release binaries)"
PLOWLINE_E2E_RATE=$RATE PLOWLINE_E2E_SECONDS=$SECONDS_ \
    cargo test --release --test e2e -- --nocapture
note "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
