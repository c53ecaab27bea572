#!/usr/bin/env bash
# Set up edgebench from scratch: a .venv with edgebench and its CPU runtimes.
#   bash scripts/bootstrap.sh          # edgebench + the CPU runtime extras (LiteRT, hls4ml, OpenVINO, ...)
#   bash scripts/bootstrap.sh --test   # also the test extras and the system packages the tests use
#                                      # (sshd, PostgreSQL, chromium for the report in a real browser)
# torch is pinned by constraints.txt: an unpinned resolve pulls gigabytes of CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
[[ "${1:-}" == "--test" ]] && with_tests=1

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "edgebench needs Python >= 3.11 (found $("$python" --version)); set PYTHON=python3.11" >&2
    exit 1
fi

system_packages=(g++)                       # hls4ml compiles its C simulation with g++
(( with_tests )) && system_packages+=(openssh-server openssh-client postgresql chromium)  # chromium: report in a real browser
missing=()
for pkg in "${system_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if (( ${#missing[@]} )); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "note: system packages missing (${missing[*]}); tests that need them will be skipped with a reason" >&2
    fi
fi

[[ -d .venv ]] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
extras="litert,fpga,openvino,remote,postgres,parquet,cuda"  # cuda: NVML bindings only (small)
(( with_tests )) && extras+=",test,ray,mlflow"  # ray: a real two-node Ray cluster; mlflow: a real mlflow server
# byte-compiled by pip (no --no-compile, though that installs 4x faster): where PYTHONDONTWRITEBYTECODE is set, as on
# this project's CI machines, nothing would ever be compiled and every process would compile its imports anew
.venv/bin/python -m pip install -q -c constraints.txt -e ".[${extras}]"
# pip compiles the packages it installs but not the editable edgebench itself: compile it once here, or every
# edgebench process (each run's workers too) compiles its imports anew, ~0.4 s each
.venv/bin/python -m compileall -q edgebench >/dev/null
echo "edgebench installed in .venv ($(.venv/bin/edgebench --help >/dev/null && echo ok))"
