#!/usr/bin/env bash
# Builds connector.wasm, a component for the world
# sluice:connector/records-connector@0.3.0, from app.py with componentize-py
# 0.25.1 (`pip install componentize-py==0.25.1`).
#
#   SLUICE_PYTHON=.venv/bin/python components/examples/python-hello/build.sh
#
# SLUICE_PYTHON names the Python that has componentize-py installed
# (default: python3). The component carries its own CPython, so the host's
# Python version does not matter.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wit="$here/../../../wit"
world="sluice:connector/records-connector@0.3.0"
python="${SLUICE_PYTHON:-python3}"

# componentize-py ships a console script but no `python -m` entry point, so
# call the script's function through the chosen interpreter.
componentize_py() {
    "$python" -c 'import sys, componentize_py; sys.argv[0] = "componentize-py"; sys.exit(componentize_py.script())' "$@"
}

if ! "$python" -c 'import componentize_py' 2>/dev/null; then
    echo "build.sh: $python has no componentize-py; run: $python -m pip install componentize-py==0.25.1" >&2
    exit 1
fi

cd "$here"
# The `wit_world` bindings, for editors and type checkers only: componentize
# generates its own copy inside the component.
rm -rf bindings
componentize_py -q -d "$wit" -w "$world" bindings bindings
componentize_py -q -d "$wit" -w "$world" componentize app -o connector.wasm
echo "built $here/connector.wasm"
