#!/usr/bin/env bash
# Everything a fresh CI machine (Debian 12, root or sudo) needs before the tests: the build
# dependencies of our crates, then the real services (nginx, ClickHouse, Tansu) through
# scripts/services.sh install. Idempotent: when everything is present it only checks, in about
# a second.
set -euo pipefail

cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

# - build-essential: cc and make. rdkafka-sys builds its bundled librdkafka with librdkafka's
#   own ./configure and make (our rdkafka features leave out sasl/gssapi, curl and zstd, so
#   librdkafka is configured --disable-gssapi and needs no -dev package for them, nor cmake);
#   libsql (Tansu's SQLite) compiles C too.
# - pkg-config, zlib1g-dev: libz-sys links the system zlib (else it builds its own copy).
# - libssl-dev: the rdkafka `ssl` feature links the system OpenSSL (openssl-sys), for TLS and
#   SASL/SCRAM.
# - curl, python3: scripts/services.sh uses them to probe services and pick free ports.
readonly PACKAGES=(build-essential pkg-config zlib1g-dev libssl-dev curl ca-certificates python3)

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo ".ci/install.sh: need root (or sudo) to run: $*" >&2
        exit 1
    fi
}

installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    echo ".ci/install.sh: apt-get install ${missing[*]}" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    export PLOWLINE_APT_UPDATED=1 # scripts/services.sh install needs no second update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# cargo fmt and cargo clippy come with the machine's toolchain; say so early if they do not.
for tool in fmt clippy; do
    cargo "$tool" --version >/dev/null 2>&1 || echo ".ci/install.sh: warning: cargo $tool is not installed" >&2
done

scripts/services.sh install
