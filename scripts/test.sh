#!/usr/bin/env bash
# plowline's test suite, exactly as CI runs it: formatting, lints, the fuzz targets' build, then
# every unit, golden, property and real-service test. The real services (nginx, the Tansu Kafka
# broker, ClickHouse) are started on loopback by scripts/services.sh and stopped at the end.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -p plowline-collector   # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build the fuzz targets"
cargo build --manifest-path fuzz/Cargo.toml --locked

services_dir="$PWD/target/plowline-test-services"
step "start the real services under $services_dir"
scripts/services.sh start "$services_dir" >&2
trap 'scripts/services.sh stop "$services_dir" >&2 || true' EXIT
# shellcheck disable=SC1091
source "$services_dir/env"

step "cargo test"
log="$PWD/target/plowline-test.log"
status=0
if [ "$#" -gt 0 ]; then
  cargo test --locked "$@" 2>&1 | tee "$log" || status=$?
else
  cargo test --workspace --locked 2>&1 | tee "$log" || status=$?
fi

scripts/services.sh stop "$services_dir" >&2 || true
trap - EXIT
# One closing line for the whole run: cargo prints one summary per test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
