#!/usr/bin/env bash
# Whole-process benchmark of plow-shipper against a minimal librdkafka producer (the baseline,
# shipper/examples/baseline_producer.rs), both with the shipper's default producer settings
# (acks=all, idempotence, lz4, linger.ms=20), into a Tansu broker with memory:// storage started
# here, on loopback. Not part of CI; results go to BENCHMARKS.md ("Shipper (whole process)").
#
#   scripts/bench-shipper.sh
#
# 1. Throughput: a file of BENCH_LINES canonical tracker lines (processor/test_data/gen.py
#    --corpus, ~1.65 kB a line; default 300000 lines ≈ 495 MB, so that a run lasts seconds) is
#    produced BENCH_ROUNDS times by the baseline, by the baseline with the shipper's trace header
#    (--headers: `plowline.source`, built by the shipper's code, so the messages are the same) and
#    by `plow-shipper run` (read_from = "beginning"), each round to fresh topics.
#    The shipper's time runs from its launch until its /metrics lines counter (lines acknowledged
#    by Kafka) reaches the line count, polled every 5 ms by one Python process (wait_acked.py);
#    its CPU time and peak RSS are read from /proc right after (so the polling's HTTP requests
#    count against the shipper). The baseline times itself from
#    main() to its last delivery report; its CPU time and peak RSS come from /usr/bin/time.
# 2. Memory while tailing BENCH_SMALL_FILES small files (default 100): all shipped, then lines
#    appended to every file for a few seconds; RSS (VmRSS, VmHWM) of the shipper after that.
# 3. CPU at a steady rate, as next to a busy nginx: lines of the same file appended one write()
#    each (as nginx writes them) at BENCH_STEADY_RATE lines/s (2000) for BENCH_STEADY_SECONDS
#    (20), the shipper with its default settings following the file; its CPU time over the run.
#
# Environment: BENCH_LINES (300000), BENCH_ROUNDS (5), BENCH_PARTITIONS (4),
# BENCH_SMALL_FILES (100), BENCH_STEADY_RATE (2000), BENCH_STEADY_SECONDS (20),
# PLOWLINE_TANSU_BIN (tansu), BENCH_KEEP=1 keeps the temp dir.
# Builds the release binaries (cargo build --release) first, unless BENCH_SHIPPER_BIN and
# BENCH_BASELINE_BIN name binaries to measure (e.g. copies of an older build, for before/after).
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
LINES=${BENCH_LINES:-300000}
ROUNDS=${BENCH_ROUNDS:-5}
PARTITIONS=${BENCH_PARTITIONS:-4}
SMALL_FILES=${BENCH_SMALL_FILES:-100}
STEADY_RATE=${BENCH_STEADY_RATE:-2000}
STEADY_SECONDS=${BENCH_STEADY_SECONDS:-20}
TANSU=${PLOWLINE_TANSU_BIN:-$(command -v tansu || echo "$HOME/.cargo/bin/tansu")}

note() { printf 'bench-shipper: %s\n' "$*" >&2; }
die() {
    printf 'bench-shipper: error: %s\n' "$*" >&2
    exit 1
}

[[ -x $TANSU ]] || die "tansu not found (scripts/services.sh install, or PLOWLINE_TANSU_BIN)"
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found (apt-get install time)"
command -v curl >/dev/null || die "curl not found"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-shipper.XXXXXX")
TANSU_PID=
SHIPPER_PID=
cleanup() {
    local pid
    for pid in "$SHIPPER_PID" "$TANSU_PID"; do
        if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        note "kept $WORK"
    else
        rm -rf -- "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---------------------------------------------------------------------------------------------
# Build, data, broker

if [[ -n ${BENCH_SHIPPER_BIN:-} && -n ${BENCH_BASELINE_BIN:-} ]]; then
    SHIPPER=$BENCH_SHIPPER_BIN
    BASELINE=$BENCH_BASELINE_BIN
else
    note "building release binaries"
    (cd "$ROOT" && cargo build --release -q -p plowline-shipper --bin plow-shipper --example baseline_producer)
    TARGET=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    SHIPPER=$TARGET/release/plow-shipper
    BASELINE=$TARGET/release/examples/baseline_producer
fi
note "plow-shipper: $SHIPPER, baseline: $BASELINE"

DATA=$WORK/data/tracker.log
mkdir -p "$WORK/data"
note "generating $LINES canonical lines"
python3 "$ROOT/processor/test_data/gen.py" --corpus "$LINES" "$DATA"
BYTES=$(stat -c %s "$DATA")
[[ $(wc -l <"$DATA") -eq $LINES ]] || die "generator wrote an unexpected line count"
note "data: $DATA, $LINES lines, $BYTES bytes"

mkdir -p "$WORK/kafka"
KPORT=$(free_port)
BROKERS=127.0.0.1:$KPORT
BROKER_URL=tcp://$BROKERS
note "starting tansu (memory://) on $BROKERS"
(cd "$WORK/kafka" && exec env RUST_LOG=warn "$TANSU" broker --cluster-id plowline \
    --listener-url "$BROKER_URL" --advertised-listener-url "$BROKER_URL" \
    --storage-engine memory://tansu/ >"$WORK/kafka/tansu.log" 2>&1) &
TANSU_PID=$!
for i in $(seq 100); do
    if RUST_LOG=error "$TANSU" topic list --broker "$BROKER_URL" >/dev/null 2>&1; then
        break
    fi
    kill -0 "$TANSU_PID" 2>/dev/null || die "tansu exited: $(tail -5 "$WORK/kafka/tansu.log")"
    [[ $i -lt 100 ]] || die "tansu did not answer within 20 s"
    sleep 0.2
done

topic() {
    RUST_LOG=error "$TANSU" topic create "$1" --partitions "$2" --broker "$BROKER_URL" >/dev/null
}

metric() { # metric PORT NAME: a counter's value, empty when the endpoint does not answer
    { curl -fsS --max-time 1 "http://127.0.0.1:$1/metrics" 2>/dev/null || true; } |
        awk -v n="plowline_shipper_$2" '$1 == n { print $2 }'
}

cpu_secs() { # cpu_secs PID: user + system seconds of all the process's threads
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat"
}

thread_cpu() { # thread_cpu PID: CPU seconds per thread name (librdkafka's threads are rdk:*)
    local task
    for task in /proc/"$1"/task/*; do
        cat "$task/stat" 2>/dev/null || true
    done | awk -v hz="$(getconf CLK_TCK)" '{
        name = $0; sub(/^[^(]*\(/, "", name); sub(/\).*$/, "", name); sub(/[0-9]+$/, "", name); gsub(/ /, "_", name)
        rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " ")
        cpu[name] += (f[12] + f[13]) / hz
    } END { for (n in cpu) printf "%s %.2f\n", n, cpu[n] }' | sort -k2,2nr
}

status_kb() { # status_kb PID FIELD: a /proc/PID/status value in kB
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

write_config() { # write_config FILE GLOB REGISTRY_DIR METRICS_PORT TOPIC
    cat >"$1" <<EOF
[[inputs]]
paths = ["$2"]
read_from = "beginning"
[kafka]
brokers = "$BROKERS"
topic = "$5"
[registry]
path = "$3"
[metrics]
listen = "127.0.0.1:$4"
EOF
}

now() { date +%s.%N; }

# wait_acked.py PORT LINES PID TIMEOUT_S: polls the shipper's /metrics every 5 ms from one process
# (a curl and an awk forked 50 times a second would take CPU from the shipper on a small machine)
# until plowline_shipper_lines_total reaches LINES; prints the time it saw that (epoch seconds).
cat >"$WORK/wait_acked.py" <<'EOF'
import os, sys, time, urllib.request
port, want, pid, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
url, name, acked = f"http://127.0.0.1:{port}/metrics", "plowline_shipper_lines_total", "?"
deadline = time.time() + timeout
while time.time() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    acked = line.split()[1]
    except OSError:
        pass
    if acked == want:
        print(f"{time.time():.6f}")
        sys.exit(0)
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(f"plow-shipper exited after {acked} of {want} lines")
    time.sleep(0.005)
sys.exit(f"only {acked} of {want} lines acknowledged after {timeout:.0f} s")
EOF

# ---------------------------------------------------------------------------------------------
# 1. Throughput

RESULTS=$WORK/results.tsv
: >"$RESULTS"
for round in $(seq "$ROUNDS"); do
    topic "shipper-$round" "$PARTITIONS"

    for variant in baseline baseline+headers; do
        note "round $round: $variant"
        topic "$variant-$round" "$PARTITIONS"
        flags=()
        [[ $variant == baseline+headers ]] && flags=(--headers)
        k0=$(cpu_secs "$TANSU_PID")
        /usr/bin/time -f '%e %U %S %M' -o "$WORK/baseline.time" \
            "$BASELINE" "${flags[@]}" --thread-cpu --brokers "$BROKERS" --topic "$variant-$round" "$DATA" \
            >"$WORK/baseline.out" 2>"$WORK/$variant.threads"
        read -r b_wall b_user b_sys b_rss_kb <"$WORK/baseline.time"
        grep -q "lines=$LINES bytes=$BYTES " "$WORK/baseline.out" ||
            die "$variant: unexpected output: $(cat "$WORK/baseline.out")"
        # Wall time from the baseline's own clock (main() to its last delivery report), as the
        # shipper's runs to its last acknowledgement: process teardown is not counted.
        b_wall=$(sed -n 's/.* seconds=\([0-9.]*\) .*/\1/p' "$WORK/baseline.out")
        printf '%s\t%s\t%s\t%s\t%s\n' "$variant" "$b_wall" \
            "$(awk -v u="$b_user" -v s="$b_sys" 'BEGIN { printf "%.2f", u + s }')" "$b_rss_kb" \
            "$(awk -v a="$k0" -v b="$(cpu_secs "$TANSU_PID")" 'BEGIN { printf "%.2f", b - a }')" >>"$RESULTS"
    done

    note "round $round: plow-shipper"
    reg=$WORK/registry-$round
    mport=$(free_port)
    write_config "$WORK/shipper-$round.toml" "$DATA" "$reg" "$mport" "shipper-$round"
    k0=$(cpu_secs "$TANSU_PID")
    t0=$(now)
    RUST_LOG=warn "$SHIPPER" run --config "$WORK/shipper-$round.toml" 2>"$WORK/shipper-$round.log" &
    SHIPPER_PID=$!
    t1=$(python3 "$WORK/wait_acked.py" "$mport" "$LINES" "$SHIPPER_PID" 300) ||
        die "plow-shipper: $(tail -5 "$WORK/shipper-$round.log")"
    s_cpu=$(cpu_secs "$SHIPPER_PID")
    s_rss_kb=$(status_kb "$SHIPPER_PID" VmHWM)
    k1=$(cpu_secs "$TANSU_PID")
    thread_cpu "$SHIPPER_PID" >"$WORK/threads-$round.txt"
    kill -TERM "$SHIPPER_PID"
    wait "$SHIPPER_PID" || die "plow-shipper did not stop cleanly: $(tail -5 "$WORK/shipper-$round.log")"
    SHIPPER_PID=
    offset=$(python3 -c 'import json,sys; print(sum(f["offset"] for f in json.load(open(sys.argv[1]))["files"]))' "$reg/registry.json")
    [[ $offset == "$BYTES" ]] || die "registry offset $offset, file size $BYTES"
    printf 'shipper\t%s\t%s\t%s\t%s\n' "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" \
        "$s_cpu" "$s_rss_kb" "$(awk -v a="$k0" -v b="$k1" 'BEGIN { printf "%.2f", b - a }')" >>"$RESULTS"
done

# ---------------------------------------------------------------------------------------------
# 2. RSS while tailing many small files

note "tailing $SMALL_FILES small files"
topic small "$PARTITIONS"
SMALL=$WORK/small
mkdir -p "$SMALL"
head -n 20 "$DATA" >"$WORK/20.log"
sed -n '21,22p;22q' "$DATA" >"$WORK/2.log"
for i in $(seq -w "$SMALL_FILES"); do
    cp "$WORK/20.log" "$SMALL/tracker-$i.log"
done
mport=$(free_port)
write_config "$WORK/small.toml" "$SMALL/tracker-*.log" "$WORK/registry-small" "$mport" small
RUST_LOG=warn "$SHIPPER" run --config "$WORK/small.toml" 2>"$WORK/small.log" &
SHIPPER_PID=$!
want=$((SMALL_FILES * 20))
wait_acked() {
    local deadline=$(($(date +%s) + 120)) acked
    while :; do
        acked=$(metric "$mport" lines_total)
        [[ $acked == "$1" ]] && return 0
        [[ $(date +%s) -lt $deadline ]] || die "small files: ${acked:-?} of $1 lines acknowledged"
        sleep 0.1
    done
}
wait_acked "$want"
# Keep every file growing for a while: 10 rounds of 2 lines appended to each of the files.
for _ in $(seq 10); do
    for f in "$SMALL"/tracker-*.log; do
        cat "$WORK/2.log" >>"$f"
    done
    want=$((want + SMALL_FILES * 2))
    sleep 0.5
done
wait_acked "$want"
small_open=$(metric "$mport" open_files)
small_rss_kb=$(status_kb "$SHIPPER_PID" VmRSS)
small_hwm_kb=$(status_kb "$SHIPPER_PID" VmHWM)
small_cpu=$(cpu_secs "$SHIPPER_PID")
kill -TERM "$SHIPPER_PID"
wait "$SHIPPER_PID" || die "plow-shipper (small files) did not stop cleanly"
SHIPPER_PID=

# ---------------------------------------------------------------------------------------------
# 3. CPU at a steady rate

steady=$((STEADY_RATE * STEADY_SECONDS))
note "following a file written at $STEADY_RATE lines/s for $STEADY_SECONDS s"
topic steady "$PARTITIONS"
: >"$WORK/steady.log"
mport=$(free_port)
cat >"$WORK/steady.toml" <<EOF
[[inputs]]
paths = ["$WORK/steady.log"]
read_from = "beginning"
[kafka]
brokers = "$BROKERS"
topic = "steady"
[registry]
path = "$WORK/registry-steady"
[metrics]
listen = "127.0.0.1:$mport"
EOF
RUST_LOG=warn "$SHIPPER" run --config "$WORK/steady.toml" 2>"$WORK/steady-shipper.log" &
SHIPPER_PID=$!
sleep 1
steady_cpu0=$(cpu_secs "$SHIPPER_PID")
python3 - "$DATA" "$WORK/steady.log" "$STEADY_RATE" "$steady" <<'EOF'
import sys, time
data, out, rate, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
lines = []
with open(data, "rb") as f:
    for line in f:
        lines.append(line)
        if len(lines) == count:
            break
log = open(out, "ab", buffering=0)
start = time.time()
for i in range(count):
    ahead = start + i / rate - time.time()
    if ahead > 0:
        time.sleep(ahead)
    log.write(lines[i % len(lines)])  # one write per line, as nginx does
EOF
python3 "$WORK/wait_acked.py" "$mport" "$steady" "$SHIPPER_PID" 60 >/dev/null ||
    die "steady rate: $(tail -5 "$WORK/steady-shipper.log")"
steady_cpu=$(awk -v a="$steady_cpu0" -v b="$(cpu_secs "$SHIPPER_PID")" 'BEGIN { printf "%.2f", b - a }')
kill -TERM "$SHIPPER_PID"
wait "$SHIPPER_PID" || die "plow-shipper (steady rate) did not stop cleanly"
SHIPPER_PID=

# ---------------------------------------------------------------------------------------------
# Report

python3 - "$RESULTS" "$LINES" "$BYTES" "$PARTITIONS" <<'EOF'
import statistics, sys
path, lines, size, partitions = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
runs = {"baseline": [], "baseline+headers": [], "shipper": []}
for row in open(path):
    who, wall, cpu, rss, broker = row.split()
    runs[who].append((float(wall), float(cpu), int(rss), float(broker)))
print(f"file: {lines} lines, {size / 1e6:.1f} MB; {len(runs['shipper'])} rounds; "
      f"topics of {partitions} partitions; median round shown, all rounds below")
print()
print("| producer | wall s | MB/s | lines/s | CPU s | CPU s per GB | peak RSS MB | broker CPU s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
med = {}
for who in runs:
    wall, cpu, rss, broker = sorted(runs[who])[len(runs[who]) // 2]
    med[who] = wall
    print(f"| {who} | {wall:.2f} | {size / 1e6 / wall:.1f} | {lines / wall:,.0f} | {cpu:.2f} | "
          f"{cpu / (size / 1e9):.2f} | {rss / 1024:.1f} | {broker:.2f} |")
print()
print(f"shipper / baseline throughput: {med['baseline'] / med['shipper']:.2f}x (target >= 0.90x); "
      f"shipper / baseline+headers: {med['baseline+headers'] / med['shipper']:.2f}x")
print()
for who in runs:
    print(f"{who} rounds (wall s / CPU s / peak RSS MB / broker CPU s): " + ", ".join(
        f"{w:.2f}/{c:.2f}/{r / 1024:.1f}/{k:.2f}" for w, c, r, k in runs[who]))
EOF
printf '\nCPU s by thread, last round:\n'
printf '  baseline: %s\n' "$(sed -n 's/^threads: //p' "$WORK/baseline.threads")"
printf '  baseline+headers: %s\n' "$(sed -n 's/^threads: //p' "$WORK/baseline+headers.threads")"
printf '  shipper: %s\n' "$(awk '{ printf "%s%s %s", sep, $1, $2; sep = ", " }' "$WORK/threads-$ROUNDS.txt")"
printf '\ntailing %s small files (%s open): RSS %.1f MB, peak RSS %.1f MB (target < 50 MB), CPU %s s\n' \
    "$SMALL_FILES" "$small_open" "$(awk -v k="$small_rss_kb" 'BEGIN { print k / 1024 }')" \
    "$(awk -v k="$small_hwm_kb" 'BEGIN { print k / 1024 }')" "$small_cpu"
printf '\nfollowing a file written at %s lines/s for %s s: CPU %s s (%.1f %% of a core)\n' \
    "$STEADY_RATE" "$STEADY_SECONDS" "$steady_cpu" \
    "$(awk -v c="$steady_cpu" -v s="$STEADY_SECONDS" 'BEGIN { print 100 * c / s }')"
