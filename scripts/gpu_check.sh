#!/usr/bin/env bash
# Check edgebench's CUDA, TensorRT and NVML paths on a machine with an NVIDIA GPU, in about 10 minutes:
#   1. a venv of its own (.venv-gpu) with a CUDA build of torch, onnxruntime-gpu, TensorRT (tensorrt-cu<N> for
#      torch's CUDA major N, where its wheels can be had) and nvidia-ml-py; a CUDA torch the machine's python
#      already has is reused (venv --system-site-packages) instead of downloading ~3 GB again;
#   2. the GPU tests (pytest -m hardware in tests/test_cuda.py, tests/test_tensorrt.py): any skipped is a failure;
#   3. scripts/gpu_bench.py: VGG-16 at CIFAR shape, torch CUDA / ORT CUDA EP / TensorRT fp16 and int8 p50 by the
#      harness vs by CUDA events;
#   4. end to end: `edgebench run scripts/gpu_check_experiment.yaml` (train, prune, export, measure on local-cuda
#      in warm workers, NVML energy, store, report).
# Without a GPU it says so in one line and exits 0. Offline machine: point pip at a wheel folder,
#   PIP_NO_INDEX=1 PIP_FIND_LINKS=/path/to/wheels bash scripts/gpu_check.sh
# A runtime whose wheels cannot be had is said so: onnxruntime-gpu's tests then fail as skipped; TensorRT's are
# listed but do not fail the check (its wheels come from pypi.nvidia.com, which a PyPI-only machine cannot reach).
# Environment: PYTHON (default python3), GPU_VENV (default .venv-gpu), GPU_CHECK_OUT (reports; default gpu-check/).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
    echo "gpu_check: no NVIDIA GPU on this machine (nvidia-smi lists none): nothing to check"
    exit 0
fi

budget_s=${GPU_CHECK_BUDGET_S:-600}
python=${PYTHON:-python3}
venv=${GPU_VENV:-.venv-gpu}
out=${GPU_CHECK_OUT:-gpu-check}
mkdir -p "$out"
# seconds left for the next step; none left: the check stops there, naming the step (timeout 0 would mean no limit)
left() { echo $(( budget_s - SECONDS > 1 ? budget_s - SECONDS : 1 )); }
step() {
    echo "== [$((SECONDS))s] $*"
    if (( SECONDS >= budget_s )); then echo "gpu_check: out of time (${budget_s}s) before: $*"; exit 1; fi
}
# run a step's command under the time left; on failure or timeout say which step, then exit 1
must() {
    local what=$1; shift
    if ! timeout "$(left)" "$@"; then echo "gpu_check: $what failed or ran out of time"; exit 1; fi
}

step "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"
if "$python" -c 'import sys, torch; sys.exit(torch.version.cuda is None)' 2>/dev/null; then
    torch_version=$("$python" -c 'import torch; print(torch.__version__.split("+")[0])')
    step "reusing $python's CUDA torch $torch_version"
    if [[ ! -d "$venv" ]]; then
        "$python" -m venv --system-site-packages "$venv"
        # where $python is itself a venv's (e.g. an image's /opt/torch/.venv), the new venv's system site is the
        # base interpreter's, without that torch: the parent's site-packages go on the path too (after the venv's)
        purelib=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        "$python" -c 'import site; print("\n".join(site.getsitepackages()))' > "$purelib/gpu-check-parent.pth"
    fi
else
    torch_version=$(sed -n 's/^torch==//p' constraints.txt)  # PyPI's Linux x86_64 torch wheel is the CUDA build
    step "installing torch $torch_version (CUDA build) into $venv"
    [[ -d "$venv" ]] || "$python" -m venv "$venv"
    must "installing torch $torch_version" "$venv/bin/python" -m pip install -q "torch==$torch_version"
fi
pin="$out/torch-pin.txt"
echo "torch==$torch_version" > "$pin"  # nothing below may replace this torch
cuda_major=$("$venv/bin/python" -c 'import torch; print(torch.version.cuda.split(".")[0])')

step "installing edgebench (without its CPU onnxruntime and pinned torch) and nvidia-ml-py"
mapfile -t deps < <("$venv/bin/python" - <<'EOF'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = project["optional-dependencies"]
for req in project["dependencies"] + extras["cuda"] + ["pytest>=8", "pytest-timeout>=2.2"]:
    if re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0] not in ("torch", "onnxruntime"):
        print(req)
EOF
)
must "installing edgebench's dependencies" "$venv/bin/python" -m pip install -q -c "$pin" "${deps[@]}"
must "installing edgebench" "$venv/bin/python" -m pip install -q --no-deps -e .
step "installing onnxruntime-gpu (pip's output: $out/pip-*.log)"
if ! timeout "$(left)" "$venv/bin/python" -m pip install -q -c "$pin" onnxruntime-gpu > "$out/pip-onnxruntime-gpu.log" 2>&1
then
    echo "gpu_check: onnxruntime-gpu could not be installed: ONNX Runtime's CUDA provider tests will fail as skipped;"
    echo "  the CPU onnxruntime goes in instead, so the ONNX exporters (which TensorRT builds from) still work"
    timeout "$(left)" "$venv/bin/python" -m pip install -q -c "$pin" onnxruntime > "$out/pip-onnxruntime.log" 2>&1 ||
        echo "gpu_check: no onnxruntime either: nothing that needs an ONNX file can run"
fi
# NVIDIA's TensorRT wheels live on pypi.nvidia.com (PyPI holds placeholders that fetch from there): asked once,
# 5 s, so an unreachable index costs no pip retries
step "installing TensorRT for CUDA $cuda_major (tensorrt-cu$cuda_major)"
tensorrt=installed
if ! "$venv/bin/python" -c 'import urllib.request as u; u.urlopen("https://pypi.nvidia.com/", timeout=5)' \
        > /dev/null 2>&1; then
    echo "gpu_check: pypi.nvidia.com cannot be reached (TensorRT's wheels are there): TensorRT is not checked"
    tensorrt=absent
elif ! timeout "$(left)" "$venv/bin/python" -m pip install -q -c "$pin" --extra-index-url https://pypi.nvidia.com \
        "tensorrt-cu$cuda_major" > "$out/pip-tensorrt.log" 2>&1; then
    echo "gpu_check: no TensorRT wheel for CUDA $cuda_major could be installed ($out/pip-tensorrt.log): TensorRT is "
    echo "  not checked"
    tensorrt=absent
fi
"$venv/bin/python" - <<'EOF'
import importlib, importlib.metadata
for name, dist in (("torch", "torch"), ("onnxruntime", "onnxruntime"), ("tensorrt", "tensorrt"),
                   ("pynvml", "nvidia-ml-py")):
    try:
        module = importlib.import_module(name)
        print(f"  {name} {getattr(module, '__version__', None) or importlib.metadata.version(dist)}")
    except Exception as exc:
        print(f"  {name}: not importable ({type(exc).__name__}: {exc})")
import torch
print(f"  torch sees {torch.cuda.device_count()} GPU(s)")
try:
    import onnxruntime
    print(f"  ONNX Runtime providers {onnxruntime.get_available_providers()}")
except ImportError:  # no onnxruntime-gpu: the exporters and the ORT tests say so below, the rest still runs
    pass
EOF

status=0
step "GPU tests (pytest -m hardware): none may skip (TensorRT's, where it could not be installed)"
set +e
timeout "$(left)" "$venv/bin/python" -m pytest -q -rs -m hardware -p no:cacheprovider \
    tests/test_cuda.py tests/test_tensorrt.py --junitxml="$out/gpu-tests.xml"
tests_rc=$?
set -e
skips=$("$venv/bin/python" -c "
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
for case in root.iter('testcase'):
    for skip in case.iter('skipped'):
        uncounted = sys.argv[2] == 'absent' and 'test_tensorrt' in (case.get('classname') or '')
        print(f\"  skipped{' (TensorRT not installed: not counted)' if uncounted else ''}: \"
              f\"{case.get('name')}: {skip.get('message')}\")
" "$out/gpu-tests.xml" "$tensorrt" 2>/dev/null || echo "  (no test report: pytest did not finish)")
counted=$(grep -v 'not counted' <<< "$skips" || true)
if [[ $tests_rc -ne 0 || -n "$counted" ]]; then
    echo "gpu_check: GPU tests did not all pass unskipped (pytest exit $tests_rc)"
    status=1
fi
[[ -n "$skips" ]] && echo "$skips"

step "benchmark: VGG-16 at CIFAR shape (scripts/gpu_bench.py)"
if ! timeout "$(left)" "$venv/bin/python" scripts/gpu_bench.py --out "$out" | tee "$out/gpu-bench.txt"; then
    echo "gpu_check: the benchmark failed or ran out of time"
    status=1
fi
step "end to end: edgebench run scripts/gpu_check_experiment.yaml on local-cuda"
rm -rf runs/gpu-check
if timeout "$(left)" "$venv/bin/edgebench" run scripts/gpu_check_experiment.yaml; then
    timeout 60 "$venv/bin/edgebench" export "$out/gpu-e2e-results.csv" --store runs/gpu-check/results.db ||
        { echo "gpu_check: exporting the run's results failed"; status=1; }
else
    echo "gpu_check: the end-to-end run failed or ran out of time"
    status=1
fi
step "done in ${SECONDS}s (budget ${budget_s}s); reports in $out/"
exit $status
