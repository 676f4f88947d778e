#!/usr/bin/env bash
# Installed, not only in the checkout: build the wheel, install it (not editable) into a fresh venv, and run
# `edgecnn targets list` and a `check` from outside the repository. The fresh venv sees the dependencies of
# the Python that runs this script through a .pth file, so nothing is downloaded.
#   scripts/wheel_smoke.sh [PYTHON]        (default: .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${1:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PY" -m pip wheel -q . -w "$WORK/dist" --no-deps
"$PY" -m venv "$WORK/venv"
# Let the fresh venv import the deps (onnx, typer, ...) installed for $PY, after its own site-packages.
DEPS=$("$PY" -c 'import onnx, os; print(os.path.dirname(os.path.dirname(onnx.__file__)))')
SITE=$("$WORK/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$DEPS" > "$SITE/edgecnn-deps.pth"
"$WORK/venv/bin/python" -m pip install -q --no-deps --no-index "$WORK"/dist/edgecnn-*.whl
cd "$WORK"  # outside the repository: only the installed package can answer
"$WORK/venv/bin/python" -c 'import edgecnn, sys; p = edgecnn.__file__; sys.exit(0 if "/venv/" in p else f"edgecnn imported from {p}, not the wheel")'
"$WORK/venv/bin/edgecnn" targets list | tee targets.txt
for t in ethos-u55 intel-cpu ort-cpu qualcomm-htp rknpu2-rk3588 intel-npu; do
  grep -q "$t" targets.txt || { echo "error: installed wheel does not list target $t"; exit 1; }
done
"$WORK/venv/bin/edgecnn" check "$REPO/models/sample_cnn.onnx" --target ethos-u55 --target intel-cpu --json check.json
"$WORK/venv/bin/python" -c 'import json; d = json.load(open("check.json")); assert len(d["targets"]) == 2, d'
echo "wheel smoke test: ok"
