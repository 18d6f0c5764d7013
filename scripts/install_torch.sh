#!/usr/bin/env bash
# Install PyTorch into the given interpreter's environment without ever pulling the
# multi-gigabyte CUDA wheels by accident:
#   - torch already importable (e.g. a CUDA build the user installed): keep it;
#   - otherwise `pip install torch==2.13.0`, which on the project's CPU machines resolves to
#     a local CPU wheel (and on a CUDA machine to PyPI's default build for that machine).
# Override the spec with MEM4D_TORCH_SPEC (e.g. MEM4D_TORCH_SPEC="torch==2.5.1").
set -euo pipefail
PY="${1:-python3}"
if "$PY" -c "import torch" 2>/dev/null; then
    echo "torch $("$PY" -c 'import torch; print(torch.__version__)') already installed; keeping it"
    exit 0
fi
"$PY" -m pip install --quiet "${MEM4D_TORCH_SPEC:-torch==2.13.0}"
