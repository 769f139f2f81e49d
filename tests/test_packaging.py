"""The regular install: what the wheel holds, where manifests are found, generated manifest names.

The full install-and-use check from outside the repository is ``.ci/smoke_wheel.sh`` (run by
``.ci/run``); these tests cover the same promises without a fresh virtual environment.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import relocbench
from relocbench import manifest as manifest_mod
from relocbench.cli import cli
from relocbench.errors import ManifestError

REPO = Path(__file__).resolve().parent.parent
ZOO = "relocbench_baselines"
BUILD_INPUTS = ("setup.py", "setup.cfg", "pyproject.toml", "README.md", "relocbench", "baselines", "manifests")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- the wheel
def _can_build_offline() -> bool:
    """Whether this environment's setuptools builds the wheel itself (pyproject.toml asks for
    setuptools >= 61; wheels need setuptools >= 70.1 or the ``wheel`` package)."""
    try:
        import setuptools
    except ImportError:
        return False
    version = tuple(int(p) for p in setuptools.__version__.split(".")[:2] if p.isdigit())
    if version < (61, 0):
        return False
    return version >= (70, 1) or importlib.util.find_spec("wheel") is not None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """The wheel built from a copy of the repository's build inputs, with this environment's
    setuptools when it can (no index needed), else as ``pip wheel .`` does (build isolation)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    for name in BUILD_INPUTS:
        p = REPO / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=ignore)
        else:
            shutil.copy2(p, src / name)
    out = tmp / "dist"
    isolation = ["--no-build-isolation"] if _can_build_offline() else []
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *isolation, "-w", str(out), str(src)],
        capture_output=True, text=True)
    assert proc.returncode == 0, f"pip wheel failed:\n{proc.stdout}\n{proc.stderr}"
    (whl,) = out.glob("relocbench-*.whl")
    with zipfile.ZipFile(whl) as zf:
        yield zf


def _packages_in(folder: Path) -> list:
    """Dotted names (relative to ``folder``'s parent) of every package folder under ``folder``."""
    return sorted(".".join(p.parent.relative_to(folder.parent).parts) for p in folder.rglob("__init__.py")
                  if "__pycache__" not in p.parts)


def test_wheel_installs_the_zoo_as_relocbench_baselines_and_no_top_level_baselines(wheel):
    names = wheel.namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"relocbench", ZOO, f"relocbench-{relocbench.__version__}.dist-info"}
    # every package folder of the repository is in the wheel, the zoo under its installed name
    for pkg in _packages_in(REPO / "relocbench"):
        assert pkg.replace(".", "/") + "/__init__.py" in names, pkg
    for pkg in _packages_in(REPO / "baselines"):
        assert ZOO + pkg[len("baselines"):].replace(".", "/") + "/__init__.py" in names, pkg
    for cfg in sorted((REPO / "baselines").glob("*/configs/*.yaml")):
        assert f"{ZOO}/{cfg.relative_to(REPO / 'baselines').as_posix()}" in names


def test_wheel_entry_points_name_the_installed_zoo(wheel):
    ep = wheel.read(f"relocbench-{relocbench.__version__}.dist-info/entry_points.txt").decode()
    group = ep.split("[relocbench.baselines]", 1)[1].split("[", 1)[0]
    targets = sorted(line.split("=", 1)[1].strip() for line in group.strip().splitlines())
    assert targets == [f"{ZOO}.stvr.zoo", f"{ZOO}.temporal.zoo"]
    assert "relocbench = relocbench.cli:main" in ep


def test_wheel_ships_every_committed_manifest_byte_for_byte(wheel):
    committed = sorted(p.parent for p in (REPO / "manifests").glob("*/manifest.json"))
    assert {p.name for p in committed} >= {"activitynet", "ucf24"}
    names = set(wheel.namelist())
    for folder in committed:
        meta = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        for fname in ["manifest.json", *meta["tables"], *meta.get("extras", [])]:
            arc = f"relocbench/_manifests/{folder.name}/{fname}"
            assert arc in names, arc
            assert _sha256(wheel.read(arc)) == _sha256((folder / fname).read_bytes()), arc
        for fname, entry in meta["tables"].items():  # what load_manifest will check
            assert _sha256(wheel.read(f"relocbench/_manifests/{folder.name}/{fname}")) == entry["sha256"]


def test_no_code_imports_the_zoo_as_baselines():
    """``baselines`` is another project's import name: the zoo is ``relocbench_baselines``."""
    bad = []
    for top in ("relocbench", "baselines", "tests", "benchmarks"):
        for path in sorted((REPO / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    mods = [node.module]
                else:
                    continue
                bad += [f"{path.relative_to(REPO)}:{node.lineno}: {m}" for m in mods
                        if m == "baselines" or m.startswith("baselines.")]
    assert bad == []


def test_the_zoo_imports_under_its_installed_name_and_registers_every_baseline():
    import relocbench_baselines
    from relocbench.registry import list_baselines

    assert Path(relocbench_baselines.__file__).resolve().parent == (REPO / "baselines").resolve()
    names = {c.name for c in list_baselines()}
    assert {"chance", "frame-dp", "cgbm", "cgbm-base", "sst", "video-triplet", "stvr-clip", "stvr-convlstm",
            "stvr-flow", "stvr-traj", "stvr-warp"} <= names


# --------------------------------------------------------------------------- resolution order
def _copy_manifest(name: str, root: Path) -> Path:
    shutil.copytree(REPO / "manifests" / name, root / name)
    return root / name


def _isolate(monkeypatch, *, checkout=None, packaged=None, env=None):
    monkeypatch.setattr(manifest_mod, "_checkout_manifests", lambda: checkout)
    monkeypatch.setattr(manifest_mod, "_packaged_manifests", lambda: packaged)
    if env is None:
        monkeypatch.delenv("RELOCBENCH_MANIFESTS", raising=False)
    else:
        monkeypatch.setenv("RELOCBENCH_MANIFESTS", str(env))


def test_checkout_manifests_found_in_a_development_install():
    assert manifest_mod._checkout_manifests() == REPO / "manifests"
    # this module runs from the checkout: relocbench/_manifests exists only in a built wheel
    assert manifest_mod._packaged_manifests() is None


def test_regular_install_reads_the_packaged_manifests_hash_checked(tmp_path, monkeypatch):
    packaged = tmp_path / "site" / "relocbench" / "_manifests"
    _copy_manifest("activitynet", packaged)
    _isolate(monkeypatch, packaged=packaged)
    assert manifest_mod.manifest_roots() == [packaged]
    assert manifest_mod.manifests_root() == packaged
    assert manifest_mod.resolve_manifest("activitynet") == packaged / "activitynet"
    assert len(relocbench.load_manifest("activitynet", "test", "pairs")) == 948
    # the packaged copy is hash-checked like the committed one
    victim = packaged / "activitynet" / "pairs-val.parquet"
    victim.write_bytes(victim.read_bytes()[:-1] + b"\0")
    with pytest.raises(ManifestError, match=r"pairs-val\.parquet: sha256 .* does not match manifest\.json"):
        relocbench.load_manifest("activitynet", "val", "pairs")


def test_resolution_order_env_then_checkout_then_package(tmp_path, monkeypatch):
    env, checkout, packaged = (tmp_path / n for n in ("env", "checkout", "packaged"))
    for root in (env, checkout, packaged):
        _copy_manifest("ucf24", root)
    _copy_manifest("activitynet", packaged)
    _isolate(monkeypatch, checkout=checkout, packaged=packaged, env=env)
    assert manifest_mod.manifest_roots() == [env, checkout, packaged]
    assert manifest_mod.resolve_manifest("ucf24") == env / "ucf24"
    # a name the first roots lack comes from the next one that has it
    assert manifest_mod.resolve_manifest("activitynet") == packaged / "activitynet"
    _isolate(monkeypatch, checkout=checkout, packaged=packaged)
    assert manifest_mod.resolve_manifest("ucf24") == checkout / "ucf24"


def test_unknown_name_lists_the_folders_searched_and_the_built_in_names(tmp_path, monkeypatch):
    packaged = tmp_path / "packaged"
    _copy_manifest("ucf24", packaged)
    _isolate(monkeypatch, packaged=packaged, env=tmp_path / "mine")
    with pytest.raises(ManifestError) as err:
        manifest_mod.resolve_manifest("activitynett")
    msg = str(err.value)
    assert "\n" not in msg
    assert f"no manifest named 'activitynett': expected a folder holding manifest.json (here or under " \
           f"{tmp_path / 'mine'}, {packaged})" in msg
    assert msg.endswith("built-in names: synthetic-sprites, ucf24")


def test_no_manifests_folder_at_all_is_a_manifest_error(monkeypatch):
    _isolate(monkeypatch)
    assert manifest_mod.manifest_roots() == []
    with pytest.raises(ManifestError, match=r"no manifests folder: expected \$RELOCBENCH_MANIFESTS"):
        manifest_mod.manifests_root()
    with pytest.raises(ManifestError, match=r"no manifest named 'activitynet'.*under no manifests folder"):
        manifest_mod.resolve_manifest("activitynet")


# --------------------------------------------------------------------------- generated manifests
def test_schema_layer_does_not_import_the_video_layer():
    code = "import sys, relocbench.manifest; print(sorted(m for m in sys.modules if m.startswith('relocbench.video')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


@pytest.fixture
def sprites_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("RELOCBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_synthetic_sprites_name_resolves_to_the_run_baseline_manifest(sprites_cache, tmp_path, monkeypatch):
    from relocbench.video.sprites import SpritesConfig, open_sprites

    monkeypatch.chdir(tmp_path)
    path = manifest_mod.resolve_manifest("synthetic-sprites")
    # the manifest `run-baseline --dataset synthetic-sprites` opens (relocbench.video.task)
    assert path == open_sprites(SpritesConfig()).path
    assert path.parent == sprites_cache
    assert relocbench.open_manifest("synthetic-sprites").name == "synthetic-sprites"


def _sprites_predictions(split: str, *, perfect: bool) -> dict:
    m = relocbench.open_manifest("synthetic-sprites")
    pairs, targets = m.table("pairs", split), m.table("targets", split)
    results = {pid: [] for pid in pairs["pair_id"]}
    for row in targets.itertuples(index=False):
        box = [row.x1, row.y1, row.x2, row.y2] if perfect else [0.0, 0.0, 0.05, 0.05]
        results[row.pair_id].append({"time": float(row.time), "box": box, "score": 1.0})
    return {"version": "relocbench/1", "task": "spatiotemporal", "manifest": "synthetic-sprites", "split": split,
            "results": results}


@pytest.mark.parametrize("perfect, expected", [(True, 1.0), (False, 0.0)])
def test_evaluate_accepts_synthetic_sprites_by_name(sprites_cache, tmp_path, monkeypatch, perfect, expected):
    monkeypatch.chdir(tmp_path)
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(_sprites_predictions("test", perfect=perfect)), encoding="utf-8")
    res = CliRunner().invoke(cli, ["evaluate", str(pred), "--manifest", "synthetic-sprites", "--split", "test",
                                    "--output-json", str(tmp_path / "scores.json")])
    assert res.exit_code == 0, res.output
    scores = json.loads((tmp_path / "scores.json").read_text(encoding="utf-8"))
    assert scores["manifest"] == "synthetic-sprites"
    assert scores["n_missing"] == 0 and scores["n_pairs"] > 0
    assert scores["frame_map"] == {k: expected for k in scores["frame_map"]}
    assert "reloc-spatiotemporal frame-mAP" in res.output


def test_ci_scripts_are_valid_bash():
    for script in (REPO / ".ci" / "run", REPO / ".ci" / "smoke_wheel.sh"):
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{script}: {proc.stderr}"
