"""Scale: shards and merge, torchrun ranks, submitit's local executor, resume after a kill."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from relocbench.errors import ConfigError, FeatureError, OutputExistsError
from relocbench.extract import ExtractConfig, extract_videos, merge_features, parse_shard
from relocbench.extract.shard import distributed_env, select_shard, shard_path
from relocbench.extract.synth import write_moving_shapes
from relocbench.extract.writer import journal_dir

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("scale")
    return [write_moving_shapes(d / f"v{i}.mp4", n_frames=20 + 7 * i, fps=25, size=(64, 48), seed=i)
            for i in range(5)]


@pytest.fixture(scope="module")
def reference(videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "features.h5"
    extract_videos(videos, ExtractConfig(), out=out)
    return out


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def test_parse_and_select_shards():
    assert parse_shard("1/4") == (1, 4) and parse_shard((0, 1)) == (0, 1)
    for bad in ("4/4", "1/0", "a/b", "-1/3"):
        with pytest.raises(ConfigError, match="shard"):
            parse_shard(bad)
    ids = [f"v{i}" for i in range(7)]
    parts = [select_shard(ids, (k, 3)) for k in range(3)]
    assert parts == [["v0", "v3", "v6"], ["v1", "v4"], ["v2", "v5"]]
    assert sorted(sum(parts, [])) == sorted(ids)
    assert select_shard(list(reversed(ids)), (0, 3)) == parts[0]   # order of the input does not matter
    assert shard_path("out/f.h5", 2, 8).name == "f.shard-00002-of-00008.h5"
    assert distributed_env({"WORLD_SIZE": "1"}) is None
    assert distributed_env({"WORLD_SIZE": "4", "RANK": "3"}) == (3, 4)
    with pytest.raises(ConfigError, match="RANK 4 is outside 0..3"):
        distributed_env({"WORLD_SIZE": "4", "RANK": "4"})


def test_sharded_then_merged_equals_unsharded(videos, reference, tmp_path):
    shards = []
    for k in range(3):
        s = extract_videos(videos, ExtractConfig(), out=tmp_path / f"s{k}.h5", shard=f"{k}/3")
        assert s.videos == len(select_shard([p.stem for p in videos], (k, 3)))
        shards.append(tmp_path / f"s{k}.h5")
    m = merge_features(tmp_path / "merged.h5", shards)
    assert (m.videos, m.shards, m.duplicates) == (5, 3, 0)
    assert (tmp_path / "merged.h5").read_bytes() == reference.read_bytes()
    with pytest.raises(OutputExistsError):
        merge_features(tmp_path / "merged.h5", shards)


def test_merge_refuses_other_settings_and_conflicting_duplicates(videos, reference, tmp_path):
    other = tmp_path / "step8.h5"
    extract_videos(videos[:2], ExtractConfig(step_frames=8), out=other)
    with pytest.raises(ConfigError, match=r"step8\.h5: was extracted with other settings .*step_frames 16 vs 8"):
        merge_features(tmp_path / "m.h5", [reference, other])
    # the same video twice with identical rows is kept once (counted)
    again = tmp_path / "again.h5"
    extract_videos(videos[:2], ExtractConfig(), out=again)
    m = merge_features(tmp_path / "m.h5", [reference, again])
    assert (m.videos, m.duplicates) == (5, 2)
    # the same id with other contents is refused
    renamed = tmp_path / "clash.h5"
    extract_videos({"v0": videos[1]}, ExtractConfig(), out=renamed)
    with pytest.raises(FeatureError, match=r"clash\.h5: v0: is also in .*with different contents"):
        merge_features(tmp_path / "m2.h5", [reference, renamed])
    with pytest.raises(ConfigError, match="--out is the input .*--force does not allow this"):
        merge_features(reference, [reference], force=True)


def test_torchrun_two_cpu_processes_equal_one(videos, reference, tmp_path):
    out = tmp_path / "ddp.h5"
    with socket.socket() as sock:   # a free port for the ranks' rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "relocbench", "extract-features", *map(str, videos), "--out", str(out), "--quiet"]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "[rank 0/2]" in r.stdout and "[rank 1/2]" in r.stdout and "Merged 5 video(s) from 2 rank(s)" in r.stdout
    assert out.read_bytes() == reference.read_bytes()
    assert not list(tmp_path.glob("ddp.shard-*"))   # shards removed after the merge


def test_submitit_local_executor_runs_the_slurm_path(videos, reference, tmp_path):
    from relocbench.extract.slurm import submit_slurm

    out = tmp_path / "slurm.h5"
    res = submit_slurm(videos, ExtractConfig(), out=out, partition="gpu", array=2, time_min=10, cluster="local",
                       cpus_per_task=1, missing=["gone"])
    assert len(res.job_ids) == 2 and res.merged.videos == 5
    assert [s.videos for s in res.summaries] == [3, 2]
    assert res.merged.report["video file missing"] == {"count": 1, "examples": ["gone"]}   # counted once
    one = tmp_path / "one.h5"
    extract_videos(videos, ExtractConfig(), out=one, missing=["gone"])
    assert out.read_bytes() == one.read_bytes()
    assert (tmp_path / ".slurm.h5.submitit").is_dir()


def test_resume_after_a_killed_run_costs_only_what_was_left(tmp_path):
    """A subprocess killed (SIGKILL) mid-run leaves its finished videos in the journal; --resume keeps them."""
    vids = [write_moving_shapes(tmp_path / "in" / f"long{i}.mp4", seconds=24, fps=25, size=(160, 120), seed=20 + i)
            for i in range(4)]
    ref = tmp_path / "ref.h5"
    extract_videos(vids, ExtractConfig(), out=ref)
    out = tmp_path / "killed.h5"
    cmd = [sys.executable, "-m", "relocbench", "extract-features", *map(str, vids), "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    journal = journal_dir(out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.is_dir() and len(list(journal.glob("*.npz"))) >= 1:
            break
        time.sleep(0.005)
    if proc.poll() is not None:
        pytest.fail(f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    finished = len(list(journal.glob("*.npz")))
    assert not out.exists() and 1 <= finished < 4
    with pytest.raises(OutputExistsError, match="interrupted extraction left"):
        extract_videos(vids, ExtractConfig(), out=out)
    s = extract_videos(vids, ExtractConfig(), out=out, resume=True)
    assert s.resumed == finished and s.extracted == 4 - finished
    assert out.read_bytes() == ref.read_bytes()     # the same file as a run never interrupted
    assert not journal.exists()
    with h5py.File(out, "r") as f:
        assert sorted(f) == [p.stem for p in vids]
