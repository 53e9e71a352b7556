#!/usr/bin/env bash
# Sets up and builds HyperSloth C++ on Debian 12 / Ubuntu 22.04+ (root, or a user with sudo). Idempotent:
# every step checks first and is skipped when already done, so a re-run with nothing changed takes seconds.
#
#   bash launch/setup.sh              # system packages, .venv with torch (LibTorch), Release build in ./build
#   bash launch/setup.sh --test-deps  # also the test oracles (transformers, tokenizers, peft, h5py, ...) and Slurm
#
# Environment: HS_BUILD_DIR (default build), HS_JOBS (default: nproc), HS_CMAKE_ARGS (extra configure flags,
# e.g. "-DHS_CUDA=OFF"), TORCH_VERSION (default 2.11.0, the version on the GPU machines).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
BUILD_DIR=${HS_BUILD_DIR:-build}
JOBS=${HS_JOBS:-$(nproc)}
TORCH_VERSION=${TORCH_VERSION:-2.11.0}
TEST_DEPS=0
for a in "$@"; do
  case "$a" in
    --test-deps) TEST_DEPS=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$a' (see --help)" >&2; exit 2 ;;
  esac
done
step() { printf '\n== %s\n' "$*"; }
T0=$(date +%s)

# ---- 1. system packages ------------------------------------------------------------------------------
PKGS=(build-essential cmake ninja-build ccache git pkg-config python3 python3-venv python3-pip
      libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools libboost-program-options-dev libgtest-dev
      nlohmann-json3-dev zlib1g-dev)
# The Slurm test (tests/slurm) starts a private single-node Slurm: its daemons and munge.
[ "$TEST_DEPS" = 1 ] && PKGS+=(slurm-wlm munge)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  step "installing system packages: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup.sh: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  step "system packages: all present"
fi

# ---- 2. Python venv with torch (LibTorch comes from the wheel) ---------------------------------------
PY=$ROOT/.venv/bin/python
if [ ! -x "$PY" ]; then
  step "creating .venv"
  python3 -m venv .venv
fi
have_torch=$("$PY" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true)
if [ "$have_torch" != "$TORCH_VERSION" ]; then
  step "installing torch==$TORCH_VERSION into .venv (LibTorch for the C++ build; ~4 GB with CUDA libraries)"
  "$PY" -m pip install -q --disable-pip-version-check "torch==$TORCH_VERSION"
else
  step "torch $have_torch: present"
fi
if [ "$TEST_DEPS" = 1 ]; then
  if ! "$PY" - "$ROOT/launch/requirements-test.txt" <<'PYEOF' 2>/dev/null; then
import sys, importlib.metadata as m
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, ver = line.split("==")
        assert m.version(name) == ver, name
PYEOF
    step "installing Python test oracles (launch/requirements-test.txt)"
    "$PY" -m pip install -q --disable-pip-version-check -r launch/requirements-test.txt
  else
    step "Python test oracles: present"
  fi
fi

# ---- 3. CMake new enough (3.22+; Ubuntu 22.04 ships 3.22) ------------------------------------------
CMAKE=cmake
cmv=$(cmake --version 2>/dev/null | head -1 | grep -oE '[0-9]+\.[0-9]+' | head -1 || echo 0.0)
if [ "$(printf '%s\n3.22\n' "$cmv" | sort -V | head -1)" != "3.22" ]; then
  step "system cmake $cmv is older than 3.22: installing cmake into .venv"
  "$PY" -m pip install -q cmake ninja
  CMAKE=$ROOT/.venv/bin/cmake
fi
# nvcc outside PATH (a plain CUDA toolkit install): point CMake at it so CUDA kernels are compiled.
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ] && [ -z "${CUDACXX:-}" ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi

# ---- 4. configure + build (Release, ccache, precompiled LibTorch header) ------------------------------
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  step "configuring $BUILD_DIR"
  # shellcheck disable=SC2086
  "$CMAKE" -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release ${HS_CMAKE_ARGS:-} | sed -n '/dependencies:/,/^$/p'
fi
step "building ($JOBS jobs)"
"$CMAKE" --build "$BUILD_DIR" -j "$JOBS" || { echo "setup.sh: build failed (see the errors above)" >&2; exit 1; }
"$BUILD_DIR/hsloth" --version
echo "setup.sh: done in $(( $(date +%s) - T0 ))s — binary: $BUILD_DIR/hsloth"
