#!/usr/bin/env bash
# plowline on loopback, end to end as far as it is built: builds the binaries, starts nginx (with
# plowline's config), the Tansu Kafka broker and ClickHouse, sends real Snowplow tracker hits
# through nginx, and enriches the access log into Snowplow events.
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

step "Enriching the access log with plow-processor enrich"
tail -n "$sent" "$PLOWLINE_NGINX_ACCESS_LOG" > "$dir/hits.log"
"$bin/plow-processor" enrich --input "$dir/hits.log" --output "$dir/enriched.ndjson" --bad "$dir/bad.ndjson"
python3 - "$dir/enriched.ndjson" "$dir/bad.ndjson" <<'PY'
import collections, json, sys
events = [json.loads(line) for line in open(sys.argv[1])]
bad = [json.loads(line) for line in open(sys.argv[2])]
def top(field):
    return ", ".join(f"{k} {n}" for k, n in collections.Counter(
        e.get(field, "-") for e in events).most_common(4))
print(f"  {len(events)} events, {len(bad)} bad rows")
print(f"  by type:    {top('event')}")
print(f"  browsers:   {top('br_family')}")
print(f"  os:         {top('os_family')}")
print(f"  referrers:  {top('refr_medium')}")
print(f"  visitors:   {len({e.get('network_userid') for e in events})} network user ids")
sample = next(e for e in events if any(k.startswith("contexts_com_plowline") for k in e))
keys = ["event", "event_id", "derived_tstamp", "page_url", "br_family", "os_family"]
keys += [k for k in sample if k.startswith(("contexts_", "unstruct_event_"))][:2]
print("  one event:  " + json.dumps({k: sample[k] for k in keys if k in sample}, ensure_ascii=False)[:500])
PY

cat >&2 <<MSG

Done. Where to look next:
  access log       $PLOWLINE_NGINX_ACCESS_LOG
  enriched events  $dir/enriched.ndjson   (bad rows: $dir/bad.ndjson)
  nginx config     $dir/nginx/nginx.conf   (rendered by plow-collector nginx-conf)
  services         source $dir/env   (Kafka: \$PLOWLINE_KAFKA_BROKERS, ClickHouse: \$PLOWLINE_CLICKHOUSE_URL)
  stop everything  scripts/quickstart.sh stop
MSG
