#!/usr/bin/env bash
# plowline end to end on loopback, with embedded defaults:
#
#   simulated visitors (the real Snowplow node tracker) -> nginx -> access log -> plow-shipper
#   -> Kafka tracker-raw (Tansu) -> plow-processor run -> tracker-enriched / tracker-bad
#   -> plow-processor load clickhouse -> ClickHouse -> a report read from ClickHouse
#
#   scripts/quickstart.sh          # run (a second run reuses the services and adds traffic)
#   scripts/quickstart.sh stop     # stop everything it started
#
# Everything lives under .plowline/quickstart: configs, logs, pids, the services' data.
# Environment: QUICKSTART_VISITORS (default 300), QUICKSTART_HITS (default 3000).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dir="$root/.plowline/quickstart"
run="$dir/plowline"
bin="$root/target/release"
visitors=${QUICKSTART_VISITORS:-300}
hits=${QUICKSTART_HITS:-3000}

step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

# Stops the pipeline's own processes (shipper, processor, loaders): SIGTERM, then waits.
stop_pipeline() {
  local pidfile pid
  for pidfile in "$run"/*.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(<"$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
}

if [ "${1:-}" = "stop" ]; then
  stop_pipeline
  [ -d "$dir" ] && scripts/services.sh stop "$dir"
  echo "quickstart: stopped" >&2
  exit 0
fi
[ $# -eq 0 ] || die "usage: scripts/quickstart.sh [stop]"

step "Installing what is missing (nginx, ClickHouse, the Tansu broker; the first time only)"
scripts/services.sh install

step "Building plow-collector, plow-shipper and plow-processor (release)"
cargo build --release --locked --workspace --bins
cargo build --release --locked -p plowline-processor --example demo_geo_db

step "Starting nginx, Kafka (Tansu) and ClickHouse on loopback under $dir"
scripts/services.sh start "$dir" >/dev/null
# shellcheck disable=SC1091
source "$dir/env"
for topic in tracker-raw:2 tracker-enriched:2 tracker-bad:1; do
  scripts/services.sh topic "$dir" "${topic%%:*}" "${topic##*:}" >/dev/null
done
"$bin/plow-shipper" check-kafka --brokers "$PLOWLINE_KAFKA_BROKERS" >&2

step "Starting plow-shipper, plow-processor and the ClickHouse loaders"
stop_pipeline
mkdir -p "$run"
"$bin/examples/demo_geo_db" tests/tracker-client/geo-demo.json "$run/demo-city.mmdb"
cat >"$run/shipper.toml" <<EOF
[[inputs]]
paths = ["$PLOWLINE_NGINX_ACCESS_LOG"]
read_from = "end"
[kafka]
brokers = "$PLOWLINE_KAFKA_BROKERS"
topic = "tracker-raw"
linger_ms = 5
[registry]
path = "$run/shipper-registry"
[metrics]
listen = "127.0.0.1:0"
EOF
cat >"$run/processor.toml" <<EOF
[kafka]
brokers = "$PLOWLINE_KAFKA_BROKERS"
input_topic = "tracker-raw"
good_topic = "tracker-enriched"
bad_topic = "tracker-bad"
group = "quickstart-processor"
[kafka.librdkafka]
"fetch.max.bytes" = "1048576"
"max.partition.fetch.bytes" = "65536"
"fetch.wait.max.ms" = "50"
[metrics]
listen = "127.0.0.1:0"
[enrichments.geo]
database = "$run/demo-city.mmdb"
[enrichments.referer]
internal_domains = ["shop.example.com"]
EOF
for kind in events bad; do
  topic=tracker-enriched; [ $kind = bad ] && topic=tracker-bad
  cat >"$run/loader-$kind.toml" <<EOF
[kafka]
brokers = "$PLOWLINE_KAFKA_BROKERS"
topic = "$topic"
group = "quickstart-clickhouse-$kind"
bad_topic = "tracker-bad"
[kafka.librdkafka]
"fetch.max.bytes" = "1048576"
"max.partition.fetch.bytes" = "65536"
"fetch.wait.max.ms" = "50"
[batch]
max_wait_ms = 500
[clickhouse]
url = "$PLOWLINE_CLICKHOUSE_URL"
database = "plowline"
table = "events"
create_schema = true
[metrics]
listen = "127.0.0.1:0"
EOF
done
start() { # NAME COMMAND...
  local name=$1; shift
  "$@" >"$run/$name.log" 2>&1 &
  echo $! >"$run/$name.pid"
}
start shipper "$bin/plow-shipper" run --config "$run/shipper.toml"
start processor "$bin/plow-processor" run --config "$run/processor.toml"
start loader-events "$bin/plow-processor" load clickhouse --config "$run/loader-events.toml"
start loader-bad "$bin/plow-processor" load clickhouse --config "$run/loader-bad.toml"
sleep 2
for name in shipper processor loader-events loader-bad; do
  kill -0 "$(<"$run/$name.pid")" 2>/dev/null || { tail -20 "$run/$name.log" >&2; die "$name did not start (log: $run/$name.log)"; }
done

ch() { curl -fsS "$PLOWLINE_CLICKHOUSE_URL/" --data-binary "$1"; }
for _ in $(seq 100); do ch "EXISTS TABLE plowline.events" 2>/dev/null | grep -q 1 && break; sleep 0.2; done
before=$(ch "SELECT count() FROM plowline.events FINAL")
bad_before=$(ch "SELECT count() FROM plowline.bad_rows FINAL" 2>/dev/null || echo 0)

step "Sending $hits hits from $visitors simulated visitors through nginx ($PLOWLINE_NGINX_URL)"
client="$root/tests/tracker-client"
[ -d "$client/node_modules/@snowplow/node-tracker" ] || npm ci --silent --no-audit --no-fund --prefix "$client"
node "$client/visitors.mjs" --endpoint "$PLOWLINE_NGINX_URL" --visitors "$visitors" --hits "$hits" \
  --out "$run/sent.ndjson" --progress
sent=$(wc -l <"$run/sent.ndjson")
# Two broken hits, to show where bad rows go: an unknown event type and a self-describing event
# whose JSON does not parse.
for query in 'e=zz&p=web&tv=quickstart' 'e=ue&p=web&tv=quickstart&ue_pr=%7Bnot%20json'; do
  curl -fsS -o /dev/null "$PLOWLINE_NGINX_URL/i?$query"
done
sent=$((sent + 2))

step "Waiting for the $sent hits to be queryable in ClickHouse (as events or bad rows)"
start_wait=$(date +%s)
while :; do
  now=$(ch "SELECT count() FROM plowline.events FINAL")
  bad_now=$(ch "SELECT count() FROM plowline.bad_rows FINAL" 2>/dev/null || echo 0)
  arrived=$((now - before + bad_now - bad_before))
  printf '\r  %d / %d events and bad rows loaded' "$arrived" "$sent" >&2
  [ "$arrived" -ge "$sent" ] && break
  if [ $(($(date +%s) - start_wait)) -gt 180 ]; then
    echo >&2
    die "only $arrived of $sent arrived after 3 minutes; see the logs in $run/*.log"
  fi
  sleep 1
done
echo >&2

step "Report (from ClickHouse: plowline.events FINAL, all runs so far)"
report() { # TITLE QUERY
  printf '\n\033[1m%s\033[0m\n' "$1"
  ch "$2 FORMAT PrettyCompactMonoBlock"
}
report "Events" "SELECT count() AS events, countIf(event = 'page_view') AS page_views,
  uniq(domain_userid) AS visitors, uniq(domain_sessionid) AS sessions,
  uniq(geo_country) AS countries FROM plowline.events FINAL"
report "By event type" "SELECT event, count() AS events FROM plowline.events FINAL
  GROUP BY event ORDER BY events DESC"
report "Top pages" "SELECT page_urlpath, count() AS views, uniq(domain_userid) AS visitors
  FROM plowline.events FINAL WHERE event = 'page_view' GROUP BY page_urlpath
  ORDER BY views DESC LIMIT 8"
report "Acquisition (entry page views)" "SELECT ifNull(refr_medium, '(direct)') AS medium,
  ifNull(refr_source, '') AS source, ifNull(mkt_medium, '') AS campaign_medium, count() AS entries
  FROM plowline.events FINAL WHERE event = 'page_view' AND ifNull(refr_medium, '') != 'internal'
  GROUP BY medium, source, campaign_medium ORDER BY entries DESC LIMIT 8"
report "Visitors by country and browser" "SELECT geo_country, br_family, uniq(domain_userid) AS visitors
  FROM plowline.events FINAL GROUP BY geo_country, br_family ORDER BY visitors DESC LIMIT 8"
report "Bad rows" "SELECT schema, count() AS rows FROM plowline.bad_rows FINAL GROUP BY schema
  UNION ALL SELECT 'total', count() FROM plowline.bad_rows FINAL"

cat >&2 <<MSG

Done. Where to look next:
  ClickHouse       curl $PLOWLINE_CLICKHOUSE_URL --data-binary 'SELECT ... FROM plowline.events FINAL'
                   or clickhouse-client --host 127.0.0.1 --port ${PLOWLINE_CLICKHOUSE_TCP##*:}
  dashboards       dashboards/clickhouse/*.sql (the same questions as the Kibana dashboard)
  pipeline logs    $run/{shipper,processor,loader-events,loader-bad}.log
  metrics          the /metrics address each process logged at start (grep metrics $run/*.log)
  more traffic     scripts/quickstart.sh   (again: adds traffic to the same pipeline)
  Kibana           deploy/compose.yaml (Elasticsearch + Kibana with the dashboard imported)
  stop everything  scripts/quickstart.sh stop
MSG
