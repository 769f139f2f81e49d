"""Progress reporter: plain lines on a non-terminal, driven by a fake clock."""
import io

import pytest

from relocbench.errors import ConfigError
from relocbench.progress import Progress, format_duration, progress_interval_s


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def make(total=40, interval=30.0, **kw):
    clock = FakeClock()
    out = io.StringIO()
    bar = Progress(total=total, desc="extract", unit="video", stream=out, interval=interval,
                   clock=clock, isatty=False, **kw)
    return bar, clock, out


def test_plain_line_every_interval_with_counts_fields_rate_eta():
    bar, clock, out = make()
    with bar:
        clock.now += 10
        bar.update(5, loss=0.5312)
        assert out.getvalue() == ""          # interval not reached yet
        clock.now += 20                      # 30 s since start
        bar.update(7, loss=0.53, val=None)
        # 12 videos in 30 s = 0.4 video/s; 28 left -> 70 s
        assert out.getvalue() == "extract: 12/40 videos (30%), loss 0.53, 0.4 video/s, ETA 1m10s\n"
        clock.now += 29
        bar.update(1)
        assert out.getvalue().count("\n") == 1
        clock.now += 1                       # 30 s since the last line
        bar.update(0, val=41.0)
        assert out.getvalue().count("\n") == 2
        assert out.getvalue().splitlines()[1].startswith("extract: 13/40 videos (32%), loss 0.53, val 41,")
        clock.now += 40                      # 100 s in all
        bar.update(27)
    last = out.getvalue().splitlines()[-1]
    # 40 videos in 100 s
    assert last == "extract: 40/40 videos (100%), loss 0.53, val 41, 0.4 video/s, done in 1m40s"
    assert out.getvalue().endswith("\n")


def test_final_line_on_failure_says_stopped_and_ends_with_newline():
    bar, clock, out = make()
    with pytest.raises(RuntimeError):
        with bar:
            clock.now += 4
            bar.update(2)
            raise RuntimeError("boom")
    assert out.getvalue() == "extract: 2/40 videos (5%), 0.5 video/s, stopped after 4s\n"


def test_unknown_total_and_single_unit():
    bar, clock, out = make(total=None, interval=0)
    clock.now += 1
    bar.update(1)
    assert out.getvalue() == "extract: 1 video, 1 video/s\n"
    bar.close()
    bar.close()                              # closing twice prints once
    assert out.getvalue().count("\n") == 2


def test_quiet_prints_nothing():
    bar, clock, out = make(quiet=True, interval=0)
    with bar:
        clock.now += 1
        bar.update(3, loss=1.0)
        bar.write("hello")
    assert out.getvalue() == ""
    assert bar.count == 3


def test_write_prints_one_line():
    bar, clock, out = make()
    bar.write("validation: 41.0")
    assert out.getvalue() == "validation: 41.0\n"


def test_terminal_uses_tqdm_and_ends_with_newline():
    out = io.StringIO()
    with Progress(total=3, desc="train", unit="step", stream=out, isatty=True) as bar:
        bar.update(1, loss=0.25)
        bar.update(2)
    text = out.getvalue()
    assert "train" in text and "3/3" in text and "loss=0.25" in text
    assert text.endswith("\n")


def test_interval_from_environment(monkeypatch):
    assert progress_interval_s({}) == 30.0
    assert progress_interval_s({"RELOCBENCH_PROGRESS_INTERVAL": "2.5"}) == 2.5
    for bad in ("x", "-1", "nan", "inf"):
        with pytest.raises(ConfigError, match=r"RELOCBENCH_PROGRESS_INTERVAL.*finite number"):
            progress_interval_s({"RELOCBENCH_PROGRESS_INTERVAL": bad})
    monkeypatch.setenv("RELOCBENCH_PROGRESS_INTERVAL", "0")
    out = io.StringIO()
    bar = Progress(total=2, desc="d", unit="step", stream=out, isatty=False)
    bar.update(1)
    assert out.getvalue().startswith("d: 1/2 steps (50%)")


def test_bad_total_refused():
    with pytest.raises(ConfigError, match="finite total"):
        Progress(total=float("nan"), stream=io.StringIO(), isatty=False)


@pytest.mark.parametrize("seconds,text", [(0, "0s"), (13.4, "13s"), (125, "2m05s"),
                                          (3720, "1h02m"), (float("inf"), "?")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_heartbeat_prints_when_no_update_comes():
    import time

    out = io.StringIO()
    bar = Progress(total=4, desc="step", unit="step", stream=out, interval=0.05, isatty=False)
    bar.update(1, loss=2.0)
    deadline = time.monotonic() + 30
    while out.getvalue().count("\n") < 2 and time.monotonic() < deadline:  # one long step: no updates
        time.sleep(0.01)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) >= 3 and all(x.startswith("step: 1/4 steps (25%), loss 2,") for x in lines)
    assert "done in" in lines[-1]
    n = len(lines)
    time.sleep(0.2)
    assert out.getvalue().count("\n") == n  # the heartbeat stops with close()


def test_no_heartbeat_with_a_fake_clock_or_when_quiet():
    bar, clock, out = make(interval=0)
    assert bar._thread is None
    q = Progress(total=1, stream=io.StringIO(), isatty=False, quiet=True, interval=0.01)
    assert q._thread is None
    q.close()


def test_a_dropped_reporter_stops_its_heartbeat():
    import gc

    out = io.StringIO()
    bar = Progress(total=4, desc="x", stream=out, interval=0.02, isatty=False)
    thread = bar._thread
    del bar
    gc.collect()
    thread.join(timeout=30)
    assert not thread.is_alive()


def test_fast_rates_print_without_exponent():
    bar, clock, out = make(total=5000, interval=0)
    clock.now += 2
    bar.update(3660)
    assert out.getvalue() == "extract: 3660/5000 videos (73%), 1830 video/s, ETA 1s\n"
