#!/usr/bin/env bash
# Install the Debian packages ghasi needs to build, test and benchmark. Idempotent: when every
# package is already present it only runs dpkg-query and exits (well under a second).
set -euo pipefail

PKGS=(
  # build
  build-essential meson ninja-build pkg-config python3 clang-format
  # libraries (see ../shared/DESIGN.md and docs/ARCHITECTURE.md for why each)
  libtalloc-dev libmicrohttpd-dev libjansson-dev libcyaml-dev libsqlite3-dev sqlite3
  libpq-dev libnats-dev libssl-dev openssl libjwt-dev libgnutls28-dev libp11-kit-dev
  libcurl4-openssl-dev libgrpc-dev libprotobuf-c-dev protobuf-c-compiler
  # tests and benchmarks
  libcmocka-dev postgresql-15 postgresql-client-15 nats-server wrk curl procps softhsm2 opensc
)
# The Node gRPC client of the integration suite (tests/grpc-node/run.sh): node and npm. Only when
# either is missing: a nodesource nodejs bundles its npm, which Debian's npm would conflict with.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  PKGS+=(nodejs npm)
fi

missing=()
for p in "${PKGS[@]}"; do
  st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
  [[ "$st" == ii* ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "deps: installing ${missing[*]}" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# The cluster that postgresql-common would create on install is not used: tests make their own.
$SUDO mkdir -p /etc/postgresql-common
[[ -f /etc/postgresql-common/createcluster.conf ]] || \
  echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
