#!/usr/bin/env bash
# Prepare an offline install of mbridge for a GPU host without network access.
#
# Usage: scripts/prepare_offline_install.sh [--with-dev] [OUT_DIR]
#
# Writes into OUT_DIR (default .whl/, git-ignored): the wheels of all seven mbridge packages,
# plus cp312 manylinux x86_64 wheels of the locked third-party dependencies that such a host
# does not usually have: the runtime closure only (a few MB), or with --with-dev also the dev
# group (the tests' and peers' packages: ~90 MB, more than one GPU-host transfer allows). "Usually has" = the CUDA PyTorch stack and the common scientific packages
# (torch, triton, numpy, the nvidia-* libraries, pytest, hypothesis, ...): see SKIP below and
# override it with MBRIDGE_OFFLINE_SKIP="name name ..." when your host differs.
#
# On the host (repository copied over, .whl/ included):
#   python3 -m pip install --no-index --no-deps --upgrade --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site
#   python3 -m mbridge.cli smoke
# (--no-deps keeps pip from touching the host's own torch; the lock's versions travel.)
set -euo pipefail
cd "$(dirname "$0")/.."
groups=(--no-dev)
if [ "${1:-}" = "--with-dev" ]; then
  groups=(--group dev)
  shift
fi
out=${1:-.whl}
mkdir -p "$out"

SKIP=${MBRIDGE_OFFLINE_SKIP:-"torch triton numpy sympy mpmath networkx jinja2 markupsafe filelock
fsspec typing-extensions setuptools packaging pyyaml pybind11 ninja pytest pluggy iniconfig
pygments hypothesis sortedcontainers attrs"}

is_skipped() {
  local name=$1
  case "$name" in nvidia-* | cuda-*) return 0 ;; esac
  for s in $SKIP; do [ "$s" = "$name" ] && return 0; done
  return 1
}

echo "building the mbridge wheels into $out/"
uv build --all-packages --wheel --out-dir "$out" -q

requirements=$(uv export --frozen --all-packages --no-hashes --no-emit-workspace \
  --no-annotate --no-header "${groups[@]}" | grep -v '^\s*#' | grep -v '^-e' | grep -v "sys_platform == 'win32'" | sed 's/ *;.*//')
for req in $requirements; do
  name=$(echo "${req%%==*}" | tr 'A-Z_.' 'a-z--')
  if is_skipped "$name"; then continue; fi
  echo "downloading $req"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d "$out" "$req"
done
du -sh "$out"
ls "$out"
