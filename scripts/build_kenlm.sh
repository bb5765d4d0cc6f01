#!/usr/bin/env bash
# Build KenLM's lmplz and build_binary from the pinned PyPI source distribution and install
# them into PREFIX/bin.
#
#   scripts/build_kenlm.sh PREFIX        (the Makefile passes the project's .venv)
#
# KenLM publishes no binary of its command-line tools; the `kenlm` sdist on PyPI carries the
# full C++ source, and PyPI is the one place the build is allowed to fetch from. Does nothing
# when PREFIX/bin/lmplz and PREFIX/bin/build_binary already exist and run. Needs Debian's boost
# and compression headers: installed with apt-get when run as root, otherwise named and the
# script exits non-zero. Environment: KENLM_VERSION (default below), JOBS (default 2),
# PIP (default PREFIX/bin/pip, else python3 -m pip).
set -euo pipefail

KENLM_VERSION="${KENLM_VERSION:-0.3.0}"
JOBS="${JOBS:-2}"
# find_package(Boost ... unit_test_framework) is unconditional in KenLM's CMakeLists, so the
# test headers are needed even though no test is compiled.
APT_PACKAGES=(
    cmake g++ make
    libboost-program-options-dev libboost-system-dev libboost-thread-dev libboost-test-dev
    zlib1g-dev libbz2-dev liblzma-dev
)

if [ $# -ne 1 ]; then
    echo "usage: $0 PREFIX   (installs lmplz and build_binary into PREFIX/bin)" >&2
    exit 2
fi
PREFIX="$(mkdir -p "$1" && cd "$1" && pwd)"
BIN="$PREFIX/bin"

# Both tools exit non-zero when asked for their usage, so "runs" means it starts and prints
# it (captured first: grep -q closing the pipe early would fail the check under pipefail).
tools_work() {
    [ -x "$BIN/lmplz" ] && [ -x "$BIN/build_binary" ] || return 1
    local usage
    usage="$("$BIN/lmplz" --help 2>&1 || true)"
    [[ "$usage" == *"--order"* ]] || return 1
    usage="$("$BIN/build_binary" 2>&1 || true)"
    [[ "$usage" == *"Usage"* ]] || return 1
}

if tools_work; then
    echo "KenLM tools already installed in $BIN"
    exit 0
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "installing Debian packages for the KenLM build: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    else
        echo "building KenLM needs these Debian packages; please run:" >&2
        echo "  sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

if [ -n "${PIP:-}" ]; then
    read -r -a pip_cmd <<<"$PIP"
elif [ -x "$PREFIX/bin/pip" ]; then
    pip_cmd=("$PREFIX/bin/pip")
else
    pip_cmd=(python3 -m pip)
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/kenlm-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# --no-binary kenlm rather than :all:, because pip prepares the sdist's metadata in an isolated
# build environment, and :all: would also compile that environment's `cmake` PyPI package from
# source (tens of minutes). Only kenlm's own source is used below; the build uses system cmake.
echo "downloading kenlm==$KENLM_VERSION source from PyPI"
"${pip_cmd[@]}" download --quiet --no-deps --no-binary kenlm --dest "$work" \
    "kenlm==$KENLM_VERSION"
sdist="$work/kenlm-$KENLM_VERSION.tar.gz"
if [ ! -f "$sdist" ]; then
    echo "expected the source distribution $sdist after pip download; found:" >&2
    ls -l "$work" >&2
    exit 1
fi
tar -xzf "$sdist" -C "$work"
src="$work/kenlm-$KENLM_VERSION"

echo "building lmplz and build_binary (Release, -j$JOBS)"
start=$SECONDS
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DCOMPILE_TESTS=OFF \
    -DENABLE_PYTHON=OFF -DENABLE_INTERPOLATE=OFF >"$work/cmake.log" 2>&1 \
    || { cat "$work/cmake.log" >&2; exit 1; }
cmake --build "$work/build" --target lmplz build_binary -j "$JOBS" >"$work/make.log" 2>&1 \
    || { tail -n 50 "$work/make.log" >&2; exit 1; }

mkdir -p "$BIN"
for tool in lmplz build_binary; do
    install -m 0755 "$work/build/bin/$tool" "$BIN/$tool"
done
if ! tools_work; then
    echo "installed $BIN/lmplz and $BIN/build_binary but they do not run" >&2
    exit 1
fi
echo "KenLM $KENLM_VERSION lmplz and build_binary installed in $BIN ($((SECONDS - start)) s build)"
