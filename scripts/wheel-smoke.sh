#!/usr/bin/env bash
# The wheel is the product: build the sdist and the wheel (the wheel from the sdist, so a
# file missing from the sdist fails here), install the wheel into a fresh venv outside the
# checkout, and use it there as a user would:
#
#   scripts/wheel-smoke.sh [DIST_DIR]
#
# streamkit --help, --version, `streamkit demo --events 2000 --json` on a throwaway Kafka
# (lost must be 0), and an import of the whole public API. Needs the Docker engine and the
# test-kit images (make services images). Prints the core install's size and package count.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
PYTHON=${PYTHON:-python3}
DIST=${1:-$REPO/dist}
WORK=$(mktemp -d /tmp/streamkit-wheel.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
say() { printf 'wheel-smoke: %s\n' "$*" >&2; }

rm -rf "$DIST"
"$REPO/.venv/bin/python" -m build --outdir "$DIST" "$REPO" >"$WORK/build.log" 2>&1 \
    || { tail -30 "$WORK/build.log"; exit 1; }
WHEEL=$(ls "$DIST"/streamkit-*.whl)
say "built $(basename "$(ls "$DIST"/streamkit-*.tar.gz)") and $(basename "$WHEEL")"
"$PYTHON" -c 'import sys, zipfile; names = zipfile.ZipFile(sys.argv[1]).namelist()
sys.exit("streamkit/cli/schemas/orders/order_placed.avsc" not in names)' "$WHEEL" \
    || { say "the wheel lacks the demo's example schemas"; exit 1; }

# The core install alone: its size and package count (pip itself left out).
"$PYTHON" -m venv "$WORK/core"
"$WORK/core/bin/pip" install --quiet "$WHEEL"
site=$("$WORK/core/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
packages=$("$WORK/core/bin/pip" list --format=freeze --exclude pip --exclude streamkit | wc -l)
say "core install: $(du -sh "$site" | cut -f1) in site-packages, $packages packages besides streamkit"
(cd "$WORK" && "$WORK/core/bin/python" - <<'PY'
import streamkit
from streamkit import *  # noqa: F403
missing = [name for name in streamkit.__all__ if not hasattr(streamkit, name)]
assert not missing, missing
print(f"import smoke: {len(streamkit.__all__)} public names of streamkit {streamkit.__version__}")
PY
)
if "$WORK/core/bin/streamkit" --help >"$WORK/nocli.out" 2>&1; then
    say "streamkit without the cli extra should fail"; exit 1
fi
grep -q "pip install 'streamkit\[cli\]'" "$WORK/nocli.out" \
    || { cat "$WORK/nocli.out"; say "no install line without the cli extra"; exit 1; }

# The user's install for the demo: the command line and the throwaway Kafka.
"$PYTHON" -m venv "$WORK/user"
"$WORK/user/bin/pip" install --quiet "$WHEEL[cli,testing]"
mkdir "$WORK/empty"
cd "$WORK/empty"
env -u PYTHONPATH "$WORK/user/bin/streamkit" --help >/dev/null
version=$(env -u PYTHONPATH "$WORK/user/bin/streamkit" --version)
expected="streamkit $("$WORK/user/bin/python" -c 'import streamkit; print(streamkit.__version__)')"
[[ "$version" == "$expected" ]] || { say "--version said '$version'"; exit 1; }
say "$version"
env -u PYTHONPATH $(env | grep -o '^STREAMKIT_[A-Z_]*' | grep -v '^STREAMKIT_TEST_' | sed 's/^/-u /') \
    timeout 600 "$WORK/user/bin/streamkit" demo --events 2000 --json >"$WORK/demo.out" 2>"$WORK/demo.err" \
    || { tail -40 "$WORK/demo.err"; exit 1; }
summary=$(tail -1 "$WORK/demo.out")
"$WORK/user/bin/python" - "$summary" <<'PY'
import json, sys
summary = json.loads(sys.argv[1])
assert summary["produced"] == 2000 and summary["lost"] == 0, summary
assert summary["cluster"] == "throwaway", summary
print(f"demo from the wheel: produced {summary['produced']}, lost {summary['lost']}, "
      f"duplicates skipped {summary['duplicates_skipped']}, "
      f"dead-lettered {summary['dead_lettered']}, {summary['msgs_per_s']:.0f} msg/s")
PY
say "ok"
