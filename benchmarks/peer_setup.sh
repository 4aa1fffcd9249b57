#!/usr/bin/env bash
# Create benchmarks/.peer-venv with RecBole 1.2.1, the reference implementation that
# benchmarks/recbole_peer.py runs side by side with distillrec.
#
# Why a separate venv: RecBole 1.2.1 pins old helpers (colorlog, colorama, ray<=2.6.3) and its
# Config sets `np.float_` etc., which numpy 2 removed, so it needs numpy<2 — the main venv must
# not be downgraded for that.
#
# Pins:
#   torch==2.13.0  same build as the main venv; without it pip pulls the newest torch + CUDA stack.
#   numpy<2        Config.compatibility_settings() touches np.float_ / np.unicode_ (gone in numpy 2).
#   pandas<2.3     keeps pandas 2.2, which still supports numpy 1.26 and predates the pandas 3
#                  string-dtype / copy-on-write changes that RecBole 1.2.1 was never run against.
#   scipy<1.14     a scipy line of numpy 1.26's time (conservative: RecBole only uses scipy.sparse).
#   setuptools<81  ray 2.6.3 (imported by recbole.quick_start) needs pkg_resources, which
#                  setuptools 81 drops and which a fresh 3.11 venv lacks.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.peer-venv"
python="${PYTHON:-python3.11}"

# Importing recbole.quick_start pulls in torch, numpy, pandas, scipy and ray: a real smoke test.
if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -W ignore -c "import recbole.quick_start" 2>/dev/null; then
    echo "peer venv already present: $venv"
    exit 0
fi

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet \
    "recbole==1.2.1" \
    "torch==2.13.0" \
    "numpy<2" \
    "pandas<2.3" \
    "scipy<1.14" \
    "setuptools<81"
"$venv/bin/python" -m pip check
echo "peer venv ready: $venv"
