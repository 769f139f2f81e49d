"""README "Your own model": its plugin, found through its entry point, shown, run and published."""
from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from relocbench.cli import cli

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = Path(__file__).with_name("my_relocbench_model.py")


def readme_blocks():
    """The fenced blocks of README.md's "Your own model" section, by language."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## Your own model\n")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end > 0 else None]
    return {lang: body for lang, body in re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)}


def test_readme_shows_the_tested_plugin():
    blocks = readme_blocks()
    assert blocks["python"] == PLUGIN.read_text(encoding="utf-8")
    eps = tomllib.loads(blocks["toml"])["project"]["entry-points"]["relocbench.baselines"]
    assert eps == {"window-match": "my_relocbench_model"}
    assert "run-baseline window-match --show-config" in blocks["sh"]


@pytest.fixture()
def installed_plugin(tmp_path, monkeypatch):
    """The README's package as if pip-installed: its module and a dist-info with the README's
    entry points on sys.path; the registry reloads its entry points (and forgets them after)."""
    import relocbench.registry as registry

    blocks = readme_blocks()
    site = tmp_path / "site-packages"
    site.mkdir()
    (site / "my_relocbench_model.py").write_text(blocks["python"], encoding="utf-8")
    meta = tomllib.loads(blocks["toml"])["project"]
    info = site / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    eps = meta["entry-points"]["relocbench.baselines"]
    (info / "entry_points.txt").write_text("[relocbench.baselines]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    # the installed baselines registered first: the zoo's modules register on their first
    # import only, so a registry copy taken before it would leave the restored one empty
    registry.list_baselines()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "my_relocbench_model", raising=False)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_LOADED", False)
    yield site
    sys.modules.pop("my_relocbench_model", None)


def test_the_entry_point_registers_the_plugin(installed_plugin):
    from relocbench.registry import ENTRY_POINT_GROUP, _entry_points, get_baseline

    assert ENTRY_POINT_GROUP == "relocbench.baselines"
    assert "my_relocbench_model" in {ep.value for ep in _entry_points()}
    cls = get_baseline("window-match")
    assert cls.__module__ == "my_relocbench_model" and str(installed_plugin) in sys.modules[cls.__module__].__file__
    cfg = cls.default_config({"scale": 1.5})
    assert (cfg.top_k, cfg.scale, cfg.steps) == (5, 1.5, 0) and cls.parameter_count() == 0


def test_predictions_on_hand_made_features(installed_plugin):
    """The reference repeats the query's direction on steps 3..5: the best window is [3, 6)."""
    import numpy as np
    import pandas as pd

    from relocbench.baseline import RunContext
    from relocbench.registry import get_baseline

    class Store:
        def get(self, video):
            if video == "q":
                return np.tile([1.0, 0.0], (3, 1))
            ref = np.tile([0.0, 1.0], (10, 1))
            ref[3:6] = [2.0, 0.0]
            return ref

    cls = get_baseline("window-match")
    pairs = pd.DataFrame([{"pair_id": "p", "query_video": "q", "query_start_step": 0, "query_end_step": 3,
                           "ref_video": "r", "ref_start_step": 0, "ref_end_step": 10}])
    out = cls(cls.default_config({"top_k": 2}), RunContext("d", None, Store(), "cpu")).predict(None, pairs)
    assert out["p"][0] == {"segment": [3, 6], "score": pytest.approx(1.0)}
    assert len(out["p"]) == 2 and out["p"][1]["score"] < 1.0


def test_show_config_run_and_publish_through_the_cli(installed_plugin, small_manifest, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["run-baseline", "window-match", "--show-config"])
    assert res.exit_code == 0, res.output
    assert "window-match config (WindowMatchConfig)" in res.output and "scale" in res.output and "top_k" in res.output
    (tmp_path / "bad.yaml").write_text("scale: 9\n")
    res = runner.invoke(cli, ["run-baseline", "window-match", "--config", str(tmp_path / "bad.yaml"), "--show-config"])
    assert res.exit_code == 2 and "bad.yaml" in res.output and "scale" in res.output
    lb = tmp_path / "lb"
    res = runner.invoke(cli, ["run-baseline", "window-match", "--dataset", str(small_manifest), "--out",
                              str(tmp_path / "run"), "--threads", "1", "--quiet", "--leaderboard", str(lb)])
    assert res.exit_code == 0, res.output
    rec = json.loads((lb / "results" / "manifest" / "window-match" / "seed-0.json").read_text())
    assert rec["baseline"] == "window-match" and rec["per_pair"]["n"] == rec["metrics"]["n_pairs"]
    res = runner.invoke(cli, ["leaderboard", "--dir", str(lb)])
    assert res.exit_code == 0, res.output
    text = (lb / "README.md").read_text()
    assert "### Other baselines — features: synthetic (embedded)" in text and "| window-match |" in text
