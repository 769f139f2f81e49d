#!/usr/bin/env bash
# Wheel smoke test: build the wheel from the repository's files, install it (not editable,
# with its dependencies) into a fresh virtual environment and use it from a folder outside
# the repository, as a user of the published package would.
#
#   bash .ci/smoke_wheel.sh            # from anywhere; prints the time of each phase
#
# Checks: no top-level `baselines` package is installed and the zoo imports as
# relocbench_baselines; the committed manifests come from the wheel (hash-checked by
# load_manifest); `run-baseline chance` and `evaluate` on activitynet; a 2-step `stvr-clip`
# on synthetic-sprites and `evaluate --manifest synthetic-sprites`; load_manifest("ucf24").
# Any failure exits non-zero.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/relocbench-wheel.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
t0=$SECONDS
phase_start=$SECONDS
phase() {  # phase NAME: print how long the previous phase took
  echo "smoke: $1 ($((SECONDS - phase_start)) s)"
  phase_start=$SECONDS
}
pip_or_fail() {  # pip_or_fail ARGS...: run the fresh venv's pip; on failure show its output and stop
  if ! "$WORK/venv/bin/python" -m pip "$@" >"$WORK/pip.log" 2>&1; then
    grep -v "^WARNING: Location" "$WORK/pip.log" >&2 || true
    echo "smoke: FAILED: pip $*" >&2
    exit 1
  fi
}

# 1. the sources a clean clone has (tracked and untracked-but-not-ignored files), copied so
#    that the build leaves nothing in the repository
mkdir -p "$WORK/src"
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git -C "$REPO" ls-files -co --exclude-standard -z | (cd "$REPO" && tar --null -T - -cf -) | tar -xf - -C "$WORK/src"
else
  tar -C "$REPO" --exclude=.venv --exclude=build --exclude=dist --exclude=runs --exclude='*.egg-info' \
    --exclude=__pycache__ -cf - . | tar -xf - -C "$WORK/src"
fi

# 2. a fresh venv; the wheel is built there (with build isolation, as `pip wheel .` does)
"$PY" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
pip_or_fail wheel --quiet --no-deps "$WORK/src" -w "$WORK/dist"
WHEEL="$(ls "$WORK"/dist/relocbench-*.whl)"
phase "built $(basename "$WHEEL") ($(du -k "$WHEEL" | cut -f1) KiB)"

pip_or_fail install --quiet "$WHEEL"
pip_or_fail check
phase "installed the wheel and its dependencies into a fresh venv ($(du -sh "$WORK/venv" | cut -f1))"

# 3. use it from outside the repository, with a private cache and no manifest override
mkdir -p "$WORK/run"
cd "$WORK/run"
unset RELOCBENCH_MANIFESTS PYTHONPATH
export RELOCBENCH_CACHE="$WORK/cache" OMP_NUM_THREADS=1
RB="$WORK/venv/bin/relocbench"

"$VPY" - "$REPO" <<'EOF'
import importlib.util
import sys
from pathlib import Path

import relocbench
import relocbench_baselines
from relocbench.manifest import manifest_roots, resolve_manifest
from relocbench.registry import list_baselines

repo = Path(sys.argv[1]).resolve()
site = Path(relocbench.__file__).resolve().parent.parent
def fail(msg):
    sys.exit(f"smoke: FAILED: {msg}")
if importlib.util.find_spec("baselines") is not None:
    fail("the install provides a top-level 'baselines' package")
for mod in (relocbench, relocbench_baselines):
    if repo in Path(mod.__file__).resolve().parents:
        fail(f"{mod.__name__} imported from the repository ({mod.__file__}), not from the wheel")
roots = [r.resolve() for r in manifest_roots()]
if roots != [site / "relocbench" / "_manifests"]:
    fail(f"manifest folders {roots}, expected only the wheel's package data")
for name, split, table in (("activitynet", "test", "pairs"), ("ucf24", "test", "pairs"), ("ucf24", "train", "tubelets")):
    df = relocbench.load_manifest(name, split, table)  # sha256-checked against manifest.json
    print(f"smoke: load_manifest({name!r}, {split!r}, {table!r}): {len(df)} rows from {resolve_manifest(name)}")
names = [c.name for c in list_baselines()]
for want in ("chance", "cgbm", "sst", "frame-dp", "stvr-clip", "stvr-warp"):
    if want not in names:
        fail(f"baseline {want!r} is not registered (registered: {names})")
print(f"smoke: {len(names)} baselines registered through the entry points: {', '.join(names)}")
EOF
phase "imports, manifests and registry"

"$RB" run-baseline chance --out runs/chance --threads 1 --quiet
"$RB" evaluate runs/chance/predictions-test.json --manifest activitynet --split test \
  --output-json chance-scores.json > chance-tables.txt
head -n 7 chance-tables.txt
"$VPY" - <<'EOF'
import json, sys
ev = json.load(open("chance-scores.json"))
got = json.load(open("runs/chance/metrics-test.json"))
if ev["average"] != got["average"] or ev["n_pairs"] != got["n_pairs"]:
    sys.exit(f"smoke: FAILED: evaluate gives Average {ev['average']} over {ev['n_pairs']} pairs, "
             f"run-baseline's metrics-test.json {got['average']} over {got['n_pairs']}")
print(f"smoke: chance on activitynet test: Average {100 * ev['average']:.1f} over {ev['n_pairs']} pairs"
      " (run-baseline and evaluate agree)")
EOF
phase "chance + evaluate on activitynet"

"$RB" run-baseline stvr-clip --dataset synthetic-sprites --steps 2 --out runs/stvr-clip --threads 1 --quiet
"$RB" evaluate runs/stvr-clip/predictions-test.json --manifest synthetic-sprites --split test \
  --output-json stvr-scores.json >/dev/null
"$VPY" - <<'EOF'
import json, sys
ev = json.load(open("stvr-scores.json"))
got = json.load(open("runs/stvr-clip/metrics-test.json"))
if ev["frame_map"] != got["frame_map"]:
    sys.exit(f"smoke: FAILED: evaluate --manifest synthetic-sprites gives {ev['frame_map']}, the run {got['frame_map']}")
print(f"smoke: 2-step stvr-clip on synthetic-sprites: frame-mAP {ev['frame_map']} over {ev['n_pairs']} pairs"
      " (run-baseline and evaluate --manifest synthetic-sprites agree)")
EOF
phase "2-step stvr-clip + evaluate on synthetic-sprites"
echo "smoke: wheel smoke test passed in $((SECONDS - t0)) s"
