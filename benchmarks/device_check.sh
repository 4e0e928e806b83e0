#!/usr/bin/env bash
# The GPU check: training and template matching on CUDA, one JSON figure per line, with the GPU
# model. Run it on a machine with a CUDA device, from the repository root, in an environment
# where `pip install -e ".[workflow,dev]"` has installed the project with a CUDA build of torch:
#   bash benchmarks/device_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python - <<'PY'
import json, torch
print(json.dumps({"name": "device", "value": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none", "unit": ""}))
PY
# the CUDA path of the matcher, against the CPU (skipped, not failed, without CUDA)
python -m pytest -q tests/orientation/test_matcher.py -k cuda
CRYOAVAE_BENCH_DEVICE=cuda python benchmarks/run.py --only match,train
