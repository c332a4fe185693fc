# Shared by scripts/test and scripts/demo: install what is missing from Debian's packages
# (sudo when not root), idempotently, then configure and build with 2 jobs.
set -euo pipefail

PERMAFROST_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Packages the build, tests, benchmarks and examples need.
PERMAFROST_PACKAGES=(cmake g++ make pkg-config libmimalloc-dev libboost-dev doctest-dev
  libjemalloc-dev nlohmann-json3-dev gnuplot-nox wamerican python3
  clang-14 libclang-rt-14-dev libxxhash-dev liblmdb-dev libcdb-dev libmarisa-dev libabsl-dev
  python3-dev python3-pytest gunicorn python3-lmdb python3-numpy python3-marisa
  python3-pip python3-venv python3-build binutils
  python3-flask python3-torch uwsgi-core uwsgi-plugin-python3 mypy python3-ujson python3-celery)

ensure_packages() {
  local missing=()
  for p in "${PERMAFROST_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  echo "installing: ${missing[*]}" >&2
  local sudo=()
  ((EUID == 0)) || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >&2
}

# configure_and_build BUILD_DIR [cmake args...]
configure_and_build() {
  local dir=$1
  shift
  cmake -S "$PERMAFROST_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >&2
  cmake --build "$dir" -j 2 >&2
}
