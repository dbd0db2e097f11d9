#!/usr/bin/env bash
# Real services for plowline's tests and quickstart, on loopback, with all state in one directory.
#
#   scripts/services.sh install                       install nginx, ClickHouse and Tansu if missing
#   scripts/services.sh start   DIR [SERVICE...]      start services (default: all), print their env
#   scripts/services.sh stop    DIR [SERVICE...]      stop services (default: all started under DIR)
#   scripts/services.sh restart DIR [SERVICE...]      stop, then start again on the same ports
#   scripts/services.sh status  DIR                   show what runs under DIR; exit 1 if any is down
#   scripts/services.sh env     DIR                   print the env of what runs under DIR
#   scripts/services.sh topic   DIR NAME [PARTITIONS] create a Kafka topic (default 1 partition)
#   scripts/services.sh topics  DIR                   list Kafka topics (JSON)
#
# SERVICE is one of: nginx, kafka, clickhouse. See scripts/README.md for the layout under DIR,
# the variables written to DIR/env and the environment overrides.
set -euo pipefail

readonly SERVICES=(nginx kafka clickhouse)
readonly TANSU_VERSION=0.6.0
readonly TANSU_FEATURES=libsql,dynostore
readonly LOOPBACK=127.0.0.1

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT

die() {
    printf 'services.sh: error: %s\n' "$*" >&2
    exit 1
}

note() {
    printf 'services.sh: %s\n' "$*" >&2
}

usage() {
    sed -n '2,14s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

# ---------------------------------------------------------------------------------------------
# Programs

# find_bin NAME [EXTRA_DIR...]: the path of program NAME, also looking where PATH may not reach
# (/usr/sbin for a normal user, cargo's bin dir for a non-login shell). Empty if absent.
find_bin() {
    local name=$1 dir
    shift
    if command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
        return 0
    fi
    for dir in "$@" /usr/sbin /usr/bin /sbin; do
        if [[ -x $dir/$name ]]; then
            printf '%s\n' "$dir/$name"
            return 0
        fi
    done
    return 0
}

cargo_bin_dir() {
    printf '%s\n' "${CARGO_HOME:-$HOME/.cargo}/bin"
}

nginx_bin() {
    local bin=${PLOWLINE_NGINX_BIN:-$(find_bin nginx)}
    [[ -n $bin ]] || die "nginx not found; run: scripts/services.sh install"
    printf '%s\n' "$bin"
}

clickhouse_bin() {
    local bin=${PLOWLINE_CLICKHOUSE_BIN:-$(find_bin clickhouse-server)}
    [[ -n $bin ]] || die "clickhouse-server not found; run: scripts/services.sh install"
    printf '%s\n' "$bin"
}

tansu_bin() {
    local bin=${PLOWLINE_TANSU_BIN:-$(find_bin tansu "$(cargo_bin_dir)")}
    [[ -n $bin ]] || die "tansu not found; run: scripts/services.sh install"
    printf '%s\n' "$bin"
}

# The plow-collector binary that prints our nginx.conf; built if missing.
collector_bin() {
    local bin=${PLOWLINE_COLLECTOR_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/plow-collector}
    if [[ ! -x $bin ]]; then
        [[ -z ${PLOWLINE_COLLECTOR_BIN:-} ]] || die "PLOWLINE_COLLECTOR_BIN=$bin is not an executable file"
        note "building plow-collector (cargo build -p plowline-collector --bin plow-collector)"
        (cd "$ROOT" && cargo build --quiet -p plowline-collector --bin plow-collector) >&2 ||
            die "could not build plow-collector"
        [[ -x $bin ]] || die "cargo built plow-collector, but not at $bin"
    fi
    printf '%s\n' "$bin"
}

# ---------------------------------------------------------------------------------------------
# install

# as_root CMD...: run CMD as root, through sudo when we are not root.
as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

apt_install() {
    note "apt-get install $*"
    # Debian's postinst scripts start the packaged services (nginx on :80, clickhouse-server on
    # :8123/:9000) through invoke-rc.d, and clickhouse-server's fails the install when that start
    # fails, as it does without an init system. We start our own instances, so deny those starts
    # for the duration of the install, unless the machine already has a policy of its own.
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e $policy ]]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
        made_policy=1
    fi
    local rc=0
    if [[ -z ${PLOWLINE_APT_UPDATED:-} ]]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || rc=$?
        export PLOWLINE_APT_UPDATED=1
    fi
    if [[ $rc -eq 0 ]]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 || rc=$?
    fi
    if [[ $made_policy -eq 1 ]]; then
        as_root rm -f "$policy"
    fi
    [[ $rc -eq 0 ]] || die "apt-get install $* failed (exit $rc)"
}

tansu_version_ok() {
    local bin
    bin=$(find_bin tansu "$(cargo_bin_dir)")
    [[ -n $bin ]] && [[ $("$bin" --version 2>/dev/null) == "tansu $TANSU_VERSION" ]]
}

cmd_install() {
    local -a missing=()
    [[ -n $(find_bin nginx) ]] || missing+=(nginx)
    [[ -n $(find_bin clickhouse-server) ]] || missing+=(clickhouse-server)
    [[ -n $(find_bin clickhouse-client) ]] || missing+=(clickhouse-client)
    command -v curl >/dev/null 2>&1 || missing+=(curl ca-certificates)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    local need_tansu=0
    if ! tansu_version_ok; then
        need_tansu=1
        command -v cargo >/dev/null 2>&1 || [[ -x $(cargo_bin_dir)/cargo ]] ||
            die "cargo is needed to install tansu; install Rust first"
        # libsql's bundled SQLite is C: it needs a C compiler.
        command -v cc >/dev/null 2>&1 || missing+=(build-essential)
    fi
    if [[ ${#missing[@]} -gt 0 ]]; then
        apt_install "${missing[@]}"
    fi

    if [[ $need_tansu -eq 1 ]]; then
        note "cargo install tansu $TANSU_VERSION (features $TANSU_FEATURES); this takes ~12 minutes"
        local cargo
        cargo=$(command -v cargo || printf '%s\n' "$(cargo_bin_dir)/cargo")
        "$cargo" install tansu --locked --version "$TANSU_VERSION" --features "$TANSU_FEATURES" >&2 ||
            die "cargo install tansu failed"
        tansu_version_ok || die "tansu installed, but '$(cargo_bin_dir)/tansu --version' does not say $TANSU_VERSION"
    fi
    note "installed: $("$(nginx_bin)" -v 2>&1 | sed 's/^nginx version: //'), clickhouse-server" \
        "$("$(find_bin clickhouse-client)" --version 2>/dev/null | sed 's/.*version //; s/\.$//'), $("$(tansu_bin)" --version)"
}

# ---------------------------------------------------------------------------------------------
# Processes. Each service runs in a session of its own (setsid), so its pid is also the id of
# the process group that holds it and its children (nginx's workers); stop signals that group.

# group_members PGID: the live (not zombie) processes of process group PGID.
group_members() {
    local pgid=$1 f pid stat rest state pgrp
    for f in /proc/[0-9]*/stat; do
        pid=${f#/proc/}
        pid=${pid%/stat}
        { read -r stat <"$f"; } 2>/dev/null || continue
        rest=${stat##*) }
        # rest: state ppid pgrp ...
        read -r state _ pgrp _ <<<"$rest"
        if [[ $pgrp == "$pgid" && $state != Z && $state != X ]]; then
            printf '%s\n' "$pid"
        fi
    done
}

group_alive() {
    [[ -n $(group_members "$1") ]]
}

# is_ours NAME PID: PID runs the program of service NAME (guards against a reused pid).
is_ours() {
    local name=$1 pid=$2 cmdline pattern
    [[ -r /proc/$pid/cmdline ]] || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    case $name in
    nginx) pattern=nginx ;;
    kafka) pattern=tansu ;;
    clickhouse) pattern=clickhouse ;;
    esac
    [[ $cmdline == *"$pattern"* ]]
}

# running_pid NAME: the pid of service NAME under $DIR if it runs, else nothing (and status 1).
running_pid() {
    local name=$1 pidfile="$DIR/run/$1.pid" pid
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    if is_ours "$name" "$pid" && group_alive "$pid"; then
        printf '%s\n' "$pid"
        return 0
    fi
    return 1
}

# launch NAME WORKDIR LOG CMD...: start CMD in the background, in a new session, with cwd
# WORKDIR, stdout and stderr appended to LOG; record its pid in $DIR/run/NAME.pid.
launch() {
    local name=$1 workdir=$2 log=$3 pidfile="$DIR/run/$1.pid" i
    shift 3
    rm -f "$pidfile"
    printf '\n=== %s services.sh: %s\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" "$*" >>"$log"
    (
        cd "$workdir"
        exec 9>&- # the lock on DIR stays with us
        # shellcheck disable=SC2016 # $$ and $@ belong to the inner shell
        exec setsid bash -c 'printf "%s\n" "$$" >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' \
            "$pidfile" "$@" </dev/null >>"$log" 2>&1
    ) &
    for ((i = 0; i < 100; i++)); do
        [[ -s $pidfile ]] && return 0
        sleep 0.05
    done
    die "$name did not start; see $log"
}

# stop_service NAME: TERM the service's process group, KILL it after the grace period.
stop_service() {
    local name=$1 pidfile="$DIR/run/$1.pid" pid grace=${PLOWLINE_STOP_GRACE_SECS:-20} i
    if pid=$(running_pid "$name"); then
        note "stopping $name (pid $pid)"
        kill -TERM -- "-$pid" 2>/dev/null || true
        for ((i = 0; i < grace * 10; i++)); do
            group_alive "$pid" || break
            sleep 0.1
        done
        if group_alive "$pid"; then
            note "$name did not stop within ${grace}s; sending KILL"
            kill -KILL -- "-$pid" 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do
                group_alive "$pid" || break
                sleep 0.1
            done
            group_alive "$pid" && die "$name (process group $pid) survived KILL"
        fi
    fi
    rm -f "$pidfile" "$DIR/run/$name.env"
}

# ---------------------------------------------------------------------------------------------
# Ports. A service gets back the ports it had in DIR when they are still free (so clients that
# hold its address reconnect after a restart); otherwise the kernel picks free ones.

# free_ports N: N distinct free TCP ports on loopback.
free_ports() {
    local n=$1
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$n" "$LOOPBACK" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind((sys.argv[2], 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
    else
        local -a ports=()
        local p tries=0
        while [[ ${#ports[@]} -lt $n ]]; do
            ((tries++ < 500)) || die "could not find $n free ports"
            p=$((20000 + RANDOM % 30000))
            [[ " ${ports[*]} " == *" $p "* ]] && continue
            port_free "$p" && ports+=("$p")
        done
        printf '%s\n' "${ports[*]}"
    fi
}

# port_free PORT: nothing listens on, or holds, PORT on loopback.
port_free() {
    local port=$1
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$port" "$LOOPBACK" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind((sys.argv[2], int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
    else
        if (exec 3<>"/dev/tcp/$LOOPBACK/$port") 2>/dev/null; then
            return 1
        fi
        return 0
    fi
}

# pick_ports NAME N: the ports for service NAME (remembered in $DIR/run/NAME.ports).
pick_ports() {
    local name=$1 n=$2 file="$DIR/run/$1.ports" p ok=1
    local -a old=()
    if [[ -s $file && -z ${FRESH_PORTS:-} ]]; then
        read -r -a old <"$file"
        if [[ ${#old[@]} -eq $n ]]; then
            for p in "${old[@]}"; do
                port_free "$p" || ok=0
            done
            if [[ $ok -eq 1 ]]; then
                printf '%s\n' "${old[*]}"
                return 0
            fi
        fi
    fi
    free_ports "$n" | tee "$file"
}

# ---------------------------------------------------------------------------------------------
# Readiness

# nginx: a TCP connect, closed without a request. An HTTP request would be written to the
# access log, which is the tests' input; a connection without one is not. nginx binds its
# listeners after it has read its config, and the kernel queues connections for the workers.
tcp_answers() {
    # shellcheck disable=SC2016 # $0 and $1 belong to the inner shell
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$LOOPBACK" "$1" 2>/dev/null
}

clickhouse_answers() {
    [[ $(curl -s -m 2 "http://$LOOPBACK:$1/ping" 2>/dev/null) == "Ok." ]]
}

# A metadata round-trip, not only a TCP connect.
kafka_answers() {
    RUST_LOG=error timeout 5 "$(tansu_bin)" topic list --broker "tcp://$LOOPBACK:$1" >/dev/null 2>&1
}

# answers NAME: the running service NAME under $DIR answers on its (first) port.
answers() {
    local port
    read -r port _ <"$DIR/run/$1.ports" || return 1
    case $1 in
    nginx) tcp_answers "$port" ;;
    kafka) kafka_answers "$port" ;;
    clickhouse) clickhouse_answers "$port" ;;
    esac
}

# wait_ready NAME PID TIMEOUT LOG MARK PROBE ARGS...: wait until PROBE ARGS succeeds; fail at
# once when the process exits. Status 2: LOG, from byte MARK on, blames a port already in use
# (Tansu 0.6 even exits with status 0 then).
wait_ready() {
    local name=$1 pid=$2 timeout=$3 log=$4 mark=$5 i in_use
    shift 5
    for ((i = 0; i < timeout * 5; i++)); do
        "$@" && return 0
        in_use=$(tail -c +"$mark" "$log" 2>/dev/null | grep -i 'address already in use' | tail -n 1) || true
        if [[ -n $in_use ]]; then
            note "$name: $in_use ($log)"
            return 2
        fi
        if ! group_alive "$pid"; then
            "$@" && return 0
            note "$name exited before answering; see $log; last lines:"
            tail -n 20 "$log" >&2 || true
            return 1
        fi
        sleep 0.2
    done
    note "$name did not answer within ${timeout}s; see $log; last lines:"
    tail -n 20 "$log" >&2 || true
    return 1
}

now_ms() {
    local t=${EPOCHREALTIME/[.,]/}
    printf '%s\n' "$((t / 1000))"
}

size_of() {
    if [[ -e $1 ]]; then
        stat -c %s "$1"
    else
        printf '0\n'
    fi
}

# ---------------------------------------------------------------------------------------------
# The services. Each start_NAME launches once, writes the env lines of its addresses to
# $DIR/run/NAME.env (removed again if it fails) and waits; status 2 asks for a retry with fresh
# ports. They run as `start_NAME || rc=$?`, where bash ignores `set -e`: every step that can
# fail says so itself.

write_env_lines() {
    local file=$1 kv
    shift
    : >"$file.tmp"
    for kv in "$@"; do
        printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}" >>"$file.tmp"
    done
    mv "$file.tmp" "$file"
}

start_nginx() {
    local base="$DIR/nginx" port conf log mark pid rc=0 nginx collector
    mkdir -p "$base/logs" || die "cannot create $base/logs"
    nginx=$(nginx_bin) || exit 1
    port=$(pick_ports nginx 1) || die "cannot pick a port for nginx"
    conf="$base/nginx.conf"
    local access_log="$base/logs/access.log"
    if [[ -n ${PLOWLINE_NGINX_CONF:-} ]]; then
        # A user template: @LISTEN@, @PREFIX@, @ACCESS_LOG@ and @PORT@ are filled in.
        [[ -r $PLOWLINE_NGINX_CONF ]] || die "PLOWLINE_NGINX_CONF=$PLOWLINE_NGINX_CONF is not readable"
        sed -e "s|@LISTEN@|$LOOPBACK:$port|g" -e "s|@PORT@|$port|g" \
            -e "s|@PREFIX@|$base|g" -e "s|@ACCESS_LOG@|$access_log|g" \
            "$PLOWLINE_NGINX_CONF" >"$conf.tmp" || die "cannot write $conf"
    else
        collector=$(collector_bin) || exit 1
        "$collector" nginx-conf --standalone --prefix "$base" --listen "$LOOPBACK:$port" \
            --access-log "$access_log" >"$conf.tmp" || die "plow-collector nginx-conf failed"
    fi
    mv "$conf.tmp" "$conf" || die "cannot write $conf"
    # The config's own main error_log, if it has one, else ours; -e makes nginx use it from the
    # start too, so that every error (a port in use, say) lands in one file.
    log=$(sed -n 's/^[[:space:]]*error_log[[:space:]]\{1,\}\([^[:space:];]\{1,\}\).*/\1/p' "$conf" | head -n 1)
    case $log in
    "") log="$base/logs/error.log" ;;
    stderr | syslog:* | memory:*) log="$base/logs/console.log" ;;
    /*) ;;
    *) log="$base/$log" ;;
    esac
    local -a elog=(-e "$log")
    [[ $log != "$base/logs/console.log" ]] || elog=(-e stderr)
    if ! "$nginx" -q -t -p "$base/" -c "$conf" "${elog[@]}" >>"$base/logs/console.log" 2>&1; then
        tail -n 5 "$base/logs/console.log" >&2
        die "nginx rejects $conf; see $base/logs/console.log"
    fi
    mark=$(($(size_of "$log") + 1))
    launch nginx "$base" "$base/logs/console.log" \
        "$nginx" -p "$base/" -c "$conf" "${elog[@]}" -g 'daemon off;'
    pid=$(<"$DIR/run/nginx.pid")
    write_env_lines "$DIR/run/nginx.env" \
        "PLOWLINE_NGINX_URL=http://$LOOPBACK:$port" \
        "PLOWLINE_NGINX_ACCESS_LOG=$access_log" \
        "PLOWLINE_NGINX_ERROR_LOG=$log"
    wait_ready nginx "$pid" "${PLOWLINE_START_TIMEOUT_SECS:-15}" "$log" "$mark" \
        tcp_answers "$port" || rc=$?
    return "$rc"
}

start_kafka() {
    local base="$DIR/kafka" port log mark pid rc=0 url tansu storage
    mkdir -p "$base" || die "cannot create $base"
    tansu=$(tansu_bin) || exit 1
    port=$(pick_ports kafka 1) || die "cannot pick a port for kafka"
    url="tcp://$LOOPBACK:$port"
    log="$base/tansu.log"
    mark=$(($(size_of "$log") + 1))
    # Tansu resolves a sqlite:// URL against its working directory, even an absolute one
    # (sqlite:///abs/path opens ./abs/path), so it runs in $base with a relative URL.
    # memory:// is much faster to read from but loses everything when the broker stops.
    case ${PLOWLINE_KAFKA_STORAGE:-sqlite} in
        sqlite) storage="sqlite://tansu.db" ;;
        memory) storage="memory://tansu/" ;;
        *) die "PLOWLINE_KAFKA_STORAGE must be sqlite or memory, not ${PLOWLINE_KAFKA_STORAGE}" ;;
    esac
    NO_COLOR=1 RUST_LOG=${PLOWLINE_TANSU_LOG:-warn} launch kafka "$base" "$log" \
        "$tansu" broker \
        --cluster-id plowline \
        --listener-url "$url" \
        --advertised-listener-url "$url" \
        --storage-engine "$storage"
    pid=$(<"$DIR/run/kafka.pid")
    write_env_lines "$DIR/run/kafka.env" \
        "PLOWLINE_KAFKA_BROKERS=$LOOPBACK:$port" \
        "PLOWLINE_KAFKA_BROKER_URL=$url"
    wait_ready kafka "$pid" "${PLOWLINE_START_TIMEOUT_SECS:-30}" "$log" "$mark" \
        kafka_answers "$port" || rc=$?
    return "$rc"
}

clickhouse_config() {
    local base=$1 http=$2 tcp=$3
    cat >"$base/config.xml" <<EOF
<?xml version="1.0"?>
<!-- Written by scripts/services.sh; rewritten at every start. -->
<yandex>
    <logger>
        <level>information</level>
        <log>$base/log/clickhouse-server.log</log>
        <errorlog>$base/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>3</count>
    </logger>
    <listen_host>$LOOPBACK</listen_host>
    <http_port>$http</http_port>
    <tcp_port>$tcp</tcp_port>
    <path>$base/data/</path>
    <tmp_path>$base/tmp/</tmp_path>
    <user_files_path>$base/user_files/</user_files_path>
    <format_schema_path>$base/format_schemas/</format_schema_path>
    <users_config>$base/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <max_concurrent_queries>100</max_concurrent_queries>
    <mark_cache_size>268435456</mark_cache_size>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <max_table_size_to_drop>0</max_table_size_to_drop>
    <max_partition_size_to_drop>0</max_partition_size_to_drop>
</yandex>
EOF
    cat >"$base/users.xml" <<'EOF'
<?xml version="1.0"?>
<!-- Written by scripts/services.sh: one user, default, without password, from loopback only. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
}

start_clickhouse() {
    local base="$DIR/clickhouse" http tcp ports log mark pid rc=0 server
    mkdir -p "$base/data" "$base/tmp" "$base/user_files" "$base/format_schemas" "$base/log" ||
        die "cannot create the directories under $base"
    server=$(clickhouse_bin) || exit 1
    ports=$(pick_ports clickhouse 2) || die "cannot pick ports for clickhouse"
    read -r http tcp <<<"$ports"
    clickhouse_config "$base" "$http" "$tcp" || die "cannot write $base/config.xml"
    log="$base/log/clickhouse-server.err.log"
    mark=$(($(size_of "$log") + 1))
    launch clickhouse "$base" "$base/log/console.log" \
        "$server" --config-file="$base/config.xml"
    pid=$(<"$DIR/run/clickhouse.pid")
    write_env_lines "$DIR/run/clickhouse.env" \
        "PLOWLINE_CLICKHOUSE_URL=http://$LOOPBACK:$http" \
        "PLOWLINE_CLICKHOUSE_TCP=$LOOPBACK:$tcp"
    wait_ready clickhouse "$pid" "${PLOWLINE_START_TIMEOUT_SECS:-60}" "$log" "$mark" \
        clickhouse_answers "$http" || rc=$?
    return "$rc"
}

# ---------------------------------------------------------------------------------------------
# Commands over DIR

# set_dir CMD DIR: DIR made absolute; created for start, required by the others.
set_dir() {
    local cmd=$1 dir=${2:-}
    [[ -n $dir ]] || usage
    case $cmd in
    start | restart) mkdir -p "$dir/run" ;;
    stop) [[ -d $dir ]] || exit 0 ;;
    *) [[ -d $dir/run ]] || die "$dir holds no services; run: scripts/services.sh start $dir" ;;
    esac
    mkdir -p "$dir/run"
    DIR=$(cd -- "$dir" && pwd)
}

# One command at a time per DIR.
lock_dir() {
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$DIR/run/lock"
        flock -w 300 9 || die "another services.sh holds $DIR/run/lock"
    fi
}

check_names() {
    local name
    for name in "$@"; do
        case $name in
        nginx | kafka | clickhouse) ;;
        *) die "unknown service '$name' (expected: ${SERVICES[*]})" ;;
        esac
    done
}

# The env lines of the services that run under $DIR.
compose_env() {
    local name
    printf '# Written by scripts/services.sh; source it: . %q\n' "$DIR/env"
    printf 'export PLOWLINE_SERVICES_DIR=%q\n' "$DIR"
    for name in "${SERVICES[@]}"; do
        if running_pid "$name" >/dev/null && [[ -s $DIR/run/$name.env ]]; then
            cat "$DIR/run/$name.env"
        fi
    done
}

# Rewrite $DIR/env (under the lock of DIR).
write_env() {
    compose_env >"$DIR/env.tmp" && mv "$DIR/env.tmp" "$DIR/env"
}

cmd_start() {
    local -a names=("$@")
    [[ ${#names[@]} -gt 0 ]] || names=("${SERVICES[@]}")
    check_names "${names[@]}"
    command -v curl >/dev/null 2>&1 || die "curl not found; run: scripts/services.sh install"
    local name attempt rc started pid
    for name in "${names[@]}"; do
        if pid=$(running_pid "$name"); then
            if answers "$name"; then
                note "$name already runs (pid $pid)"
            else
                note "warning: $name runs (pid $pid) but does not answer; see its log under $DIR/$name"
            fi
            continue
        fi
        started=$(now_ms)
        for attempt in 1 2 3; do
            [[ $attempt -eq 1 ]] || note "$name: port taken by someone else; retrying on fresh ports"
            rc=0
            "start_$name" || rc=$?
            [[ $rc -eq 2 ]] || break
            stop_service "$name"
            FRESH_PORTS=1
        done
        unset FRESH_PORTS
        if [[ $rc -ne 0 ]]; then
            stop_service "$name"
            write_env
            die "$name did not start"
        fi
        note "$name answers (pid $(<"$DIR/run/$name.pid"), started in $(($(now_ms) - started)) ms)"
    done
    write_env
    cat "$DIR/env"
}

cmd_stop() {
    local -a names=("$@")
    [[ ${#names[@]} -gt 0 ]] || names=("${SERVICES[@]}")
    check_names "${names[@]}"
    local name
    for name in "${names[@]}"; do
        stop_service "$name"
    done
    write_env
}

cmd_status() {
    local name pid bad=0 port
    for name in "${SERVICES[@]}"; do
        if pid=$(running_pid "$name"); then
            read -r port _ <"$DIR/run/$name.ports"
            if answers "$name"; then
                printf '%-10s running  pid %-7s %s:%s\n' "$name" "$pid" "$LOOPBACK" "$port"
            else
                printf '%-10s NOT ANSWERING  pid %-7s %s:%s\n' "$name" "$pid" "$LOOPBACK" "$port"
                bad=1
            fi
        elif [[ -e $DIR/run/$name.pid ]]; then
            printf '%-10s DEAD     (stale %s)\n' "$name" "$DIR/run/$name.pid"
            bad=1
        else
            printf '%-10s stopped\n' "$name"
        fi
    done
    return "$bad"
}

kafka_url() {
    running_pid kafka >/dev/null || die "kafka does not run under $DIR; run: scripts/services.sh start $DIR kafka"
    local port
    read -r port <"$DIR/run/kafka.ports"
    printf 'tcp://%s:%s\n' "$LOOPBACK" "$port"
}

# topic_partitions NAME: from `tansu topic list` JSON on stdin, the partition count of NAME
# (nothing when there is no such topic).
topic_partitions() {
    python3 -c '
import json, sys
for t in json.load(sys.stdin):
    if t.get("name") == sys.argv[1]:
        print(len(t.get("partitions") or []))
' "$1"
}

cmd_topic() {
    local name=${1:-} partitions=${2:-1} url out
    [[ -n $name ]] || usage
    [[ $partitions =~ ^[1-9][0-9]*$ ]] || die "PARTITIONS must be a positive number, not '$partitions'"
    url=$(kafka_url)
    if out=$(RUST_LOG=error "$(tansu_bin)" topic create "$name" --partitions "$partitions" --broker "$url" 2>&1); then
        note "created topic $name ($partitions partitions) on $url"
        return 0
    fi
    local have
    have=$(RUST_LOG=error "$(tansu_bin)" topic list --broker "$url" 2>/dev/null | topic_partitions "$name") || true
    if [[ -n $have ]]; then
        if [[ $have != "$partitions" ]]; then
            note "warning: topic $name already exists on $url with $have partitions, not $partitions"
        else
            note "topic $name already exists on $url"
        fi
        return 0
    fi
    printf '%s\n' "$out" >&2
    die "could not create topic $name on $url"
}

cmd_topics() {
    RUST_LOG=error "$(tansu_bin)" topic list --broker "$(kafka_url)"
}

main() {
    [[ $# -ge 1 ]] || usage
    local cmd=$1
    shift
    case $cmd in
    install) cmd_install ;;
    start | stop | restart | status | env | topic | topics)
        set_dir "$cmd" "${1:-}"
        shift
        case $cmd in start | stop | restart) lock_dir ;; esac
        case $cmd in
        start) cmd_start "$@" ;;
        stop) cmd_stop "$@" ;;
        restart)
            cmd_stop "$@"
            cmd_start "$@"
            ;;
        status) cmd_status ;;
        env) compose_env ;;
        topic) cmd_topic "$@" ;;
        topics) cmd_topics ;;
        esac
        ;;
    -h | --help | help) usage ;;
    *) die "unknown command '$cmd'; see scripts/services.sh --help" ;;
    esac
}

main "$@"
