#!/usr/bin/env bash
# plowline on loopback, end to end as far as it is built: builds the binaries, starts nginx (with
# plowline's config), the Tansu Kafka broker and ClickHouse, sends real Snowplow tracker hits
# through nginx, and shows what plowline reads from the access log.
#
#   scripts/quickstart.sh          # run (again: services already running are reused)
#   scripts/quickstart.sh stop     # stop everything it started
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dir="$root/.plowline/quickstart"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }

if [ "${1:-}" = "stop" ]; then
  scripts/services.sh stop "$dir"
  exit 0
fi

step "Installing what is missing (nginx, ClickHouse, the Tansu broker; first time only)"
scripts/services.sh install

step "Building plow-collector, plow-shipper and plow-processor (release)"
cargo build --release --locked --workspace --bins
export PLOW_COLLECTOR="$root/target/release/plow-collector"
bin="$root/target/release"

step "Starting nginx, Kafka (Tansu) and ClickHouse on loopback under $dir"
scripts/services.sh start "$dir" >/dev/null
# shellcheck disable=SC1091
source "$dir/env"
for topic in tracker-raw tracker-enriched tracker-bad; do
  scripts/services.sh topic "$dir" "$topic" 2 >/dev/null
done
"$bin/plow-shipper" check-kafka --brokers "$PLOWLINE_KAFKA_BROKERS" >&2

step "Sending real Snowplow tracker hits (@snowplow/node-tracker, GET, plain and base64) to $PLOWLINE_NGINX_URL"
client="$root/tests/tracker-client"
[ -d "$client/node_modules/@snowplow/node-tracker" ] || npm ci --silent --no-audit --no-fund --prefix "$client"
before=$(wc -l < "$PLOWLINE_NGINX_ACCESS_LOG")
node "$client/send.mjs" --endpoint "$PLOWLINE_NGINX_URL" --base64 both --out "$dir/sent.ndjson"
sent=$(wc -l < "$dir/sent.ndjson")
for _ in $(seq 50); do
  [ "$(wc -l < "$PLOWLINE_NGINX_ACCESS_LOG")" -ge $((before + sent)) ] && break
  sleep 0.1
done

step "What plowline reads from the access log"
tail -n "$sent" "$PLOWLINE_NGINX_ACCESS_LOG" > "$dir/hits.log"
"$bin/plow-processor" parse --input "$dir/hits.log" --output "$dir/parsed.ndjson"
python3 - "$dir/parsed.ndjson" <<'PY'
import collections, json, sys
docs = [json.loads(line) for line in open(sys.argv[1])]
events = [e for d in docs for e in d.get("events", [])]
kinds = collections.Counter(e["event"]["event"] for e in events if "event" in e)
print(f"  {len(docs)} hits, {len(events)} events, "
      f"{sum('violations' in e for e in events)} with violations")
for kind, n in sorted(kinds.items()):
    print(f"    {kind:<18} {n}")
sample = next(e for e in events if e.get("event", {}).get("contexts"))
print("  one event with contexts, as decoded:")
print("    " + json.dumps(sample["event"], ensure_ascii=False)[:600] + " ...")
PY

cat >&2 <<MSG

Done. Where to look next:
  access log       $PLOWLINE_NGINX_ACCESS_LOG
  decoded events   $dir/parsed.ndjson
  nginx config     $dir/nginx/nginx.conf   (rendered by plow-collector nginx-conf)
  services         source $dir/env   (Kafka: \$PLOWLINE_KAFKA_BROKERS, ClickHouse: \$PLOWLINE_CLICKHOUSE_URL)
  stop everything  scripts/quickstart.sh stop
MSG
