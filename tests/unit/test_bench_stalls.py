"""What the benchmark reports as holding the whole machine up during a paced round."""

from __future__ import annotations

import os
import time

from bench.arrivals import pooled
from bench.common import MachineStalls


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
