"""What the benchmark reports as holding the whole machine up during a paced round."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.arrivals import pooled
from bench.common import DatabaseFreezes, MachineStalls


def test_storage_and_host_figures_add_up_their_windows(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    stalls = MachineStalls()
    stalls.windows = [0.0, 3.5, 70.0]
    stalls.stolen = [0.0, 10.0, 50.0, 60.0]
    assert stalls.figures() == {
        "storage": {"stalled_ms": 73.5, "worst_100ms_stalled_ms": 70.0, "windows_mostly_stalled": 1},
        # two cores: 200 ms of CPU in 100 ms, a quarter of it is 50
        "host": {"stolen_ms": 120, "worst_100ms_stolen_ms": 60, "of_100ms": 200, "windows_quarter_stolen": 2},
    }


def test_nothing_reported_is_none():
    assert MachineStalls().figures() == {"storage": None, "host": None}


def test_a_round_samples_the_kernel_every_tenth_of_a_second():
    with MachineStalls() as stalls:
        time.sleep(0.45)
    assert 3 <= len(stalls.stolen) <= 5  # this kernel reports steal in /proc/stat
    assert all(w >= 0 for w in stalls.stolen)


def test_paced_rounds_pool_their_host_figures():
    def paced(stolen: int, worst: int, quarters: int) -> dict:
        return {"rate": 100.0, "events": 10, "to_projection": {"count": 0},
                "host": {"stolen_ms": stolen, "worst_100ms_stolen_ms": worst, "of_100ms": 200,
                         "windows_quarter_stolen": quarters},
                "_latencies": {"to_projection": []}}

    assert pooled([paced(30, 20, 0), paced(400, 90, 3)])["host"] == {
        "stolen_ms": 430, "worst_100ms_stolen_ms": 90, "of_100ms": 200, "windows_quarter_stolen": 3}


def test_latencies_count_those_over_the_target():
    from bench.arrivals import summary

    figures = summary([0.010, 0.049, 0.050, 0.0501, 0.120])
    assert figures["over_target"] == 2  # 50.1 and 120 ms; 50.0 is on time
    assert figures["p99_ms"] == 120.0


def test_freezes_are_off_unless_asked(monkeypatch):
    monkeypatch.delenv("BENCH_FREEZE_MS", raising=False)
    asked = []
    with DatabaseFreezes(processes=lambda: asked.append(1) or []) as freezes:
        time.sleep(0.05)
    assert freezes.figures() == {} and not asked


def test_a_freeze_stops_the_server_processes_then_lets_them_go_on():
    # A stand-in for the server: a process writing the time every 5 ms.
    ticker = subprocess.Popen(
        [sys.executable, "-c", "import time\nwhile True:\n print(time.monotonic(), flush=True)\n time.sleep(0.005)"],
        stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)  # started
        with DatabaseFreezes(ms=300, every=0.2, processes=lambda: [ticker.pid]) as freezes:
            time.sleep(1.2)
        time.sleep(0.1)
        state = open(f"/proc/{ticker.pid}/stat").read().rsplit(")", 1)[1].split()[0]
        assert state != "T"  # not left stopped
    finally:
        ticker.kill()
    ticks = [float(line) for line in ticker.communicate()[0].split()]
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    count = freezes.figures()["freezes"]["count"]
    assert count >= 2 and freezes.figures()["freezes"]["each_ms"] == 300
    assert sum(1 for g in gaps if g >= 0.28) == count  # each freeze, and nothing else, held it
    assert ticks[-1] - ticks[0] > 1.0  # it went on after the freezes


def test_freezes_need_a_server_to_stop():
    with pytest.raises(RuntimeError, match="no PostgreSQL process"):
        with DatabaseFreezes(ms=100, processes=lambda: []):
            pass


def test_paced_rounds_pool_their_freezes():
    def paced(count: int) -> dict:
        return {"rate": 100.0, "events": 10, "to_projection": {"count": 0},
                "freezes": {"count": count, "each_ms": 100.0}, "_latencies": {"to_projection": []}}

    assert pooled([paced(3), paced(2)])["freezes"] == {"count": 5, "each_ms": 100.0}
    assert "freezes" not in pooled([{k: v for k, v in paced(0).items() if k != "freezes"}])
