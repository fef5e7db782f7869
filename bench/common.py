"""What every part of the benchmark shares: where the servers are, naming, timing, percentiles."""

from __future__ import annotations

import contextlib
import gc
import math
import os
import signal
import sys
import threading
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

AMQP_URL = os.environ.get("WFH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432")
RUN_ID = os.environ.get("BENCH_RUN_ID") or uuid.uuid4().hex[:6]
FREEZE_MS = float(os.environ.get("BENCH_FREEZE_MS") or 0)  # see DatabaseFreezes; 0: off
FREEZE_EVERY = float(os.environ.get("BENCH_FREEZE_EVERY") or 3)


def database_url(name: str) -> str:
    return f"{PG_URL}/bench_{RUN_ID}_{name}"


def admin_url(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/postgres"))


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Progress:
    """A one-line progress bar on stderr: `label [#####.....] done/total rate/s`."""

    def __init__(self, label: str, total: int, width: int = 30) -> None:
        self.label, self.total, self.width = label, max(total, 1), width
        self.done = 0
        self.started = time.monotonic()
        self._last = 0.0
        self._drawn = -1
        self._tty = sys.stderr.isatty()

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= (0.1 if self._tty else 5.0) or self.done >= self.total:
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        self._drawn = self.done
        filled = int(self.width * min(self.done, self.total) / self.total)
        rate = self.done / max(now - self.started, 1e-9)
        line = (f"  {self.label:34} [{'#' * filled}{'.' * (self.width - filled)}] "
                f"{self.done}/{self.total} {rate:,.0f}/s")
        sys.stderr.write(("\r" + line) if self._tty else (line + "\n"))
        sys.stderr.flush()

    def close(self) -> None:
        if self._drawn != self.done:
            self._draw(time.monotonic())
        if self._tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far (user + system) by named processes, by the benchmark itself, and
    by every RabbitMQ and PostgreSQL process (these two include other users of the servers).
    A server's exited processes count too, through their parent's children's times: a
    connection's backend that ends between two readings (a pool closed) took its CPU with it."""
    tick = os.sysconf("SC_CLK_TCK")

    def of(pid: int, children: bool) -> float:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        used = int(fields[11]) + int(fields[12])
        return (used + (int(fields[13]) + int(fields[14]) if children else 0)) / tick

    out = {name: 0.0 for name in (*pids, "bench", "rabbitmq", "postgresql")}
    named = {pid: name for name, pid in pids.items()}
    named[os.getpid()] = "bench"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            name = named.get(pid)
            server = name is None
            if server:
                comm = open(f"/proc/{pid}/comm").read().strip()
                name = "rabbitmq" if comm.startswith("beam") else "postgresql" if comm.startswith("postgres") else None
            if name is not None:
                out[name] += of(pid, children=server)
        except OSError:
            continue
    return out


class MachineStalls:
    """While in a `with` block, samples every 100 ms what held the whole machine up, whatever
    the code running on it:
    - storage: how long every runnable task waited for it (`full` in /proc/pressure/io). Each
      commit waits for its flush: a storage hiccup stalls every pipeline at once, and a run it
      hit shows a 100 ms window stalled most of the time;
    - the host: CPU time it gave to others while this (virtual) machine had work to run
      (`steal` in /proc/stat). A core taken away for tens of milliseconds delays whatever was
      to run on it, and no process here accounts for that time.
    Each is empty where the kernel does not report it."""

    PERIOD = 0.1

    def __init__(self) -> None:
        self.windows: list[float] = []  # ms stalled on storage in each period
        self.stolen: list[float] = []  # ms of CPU taken by the host in each period (all cores)
        self._tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _storage_total() -> float | None:
        try:
            full = open("/proc/pressure/io").read().split("full", 1)[1]
            return int(full.split("total=", 1)[1].split()[0]) / 1000
        except (OSError, IndexError, ValueError):
            return None

    def _stolen_total(self) -> float | None:
        try:
            fields = open("/proc/stat").readline().split()
            return int(fields[8]) * self._tick_ms if fields[0] == "cpu" else None
        except (OSError, IndexError, ValueError):
            return None

    def _sample(self) -> None:
        storage, stolen = self._storage_total(), self._stolen_total()
        while not self._stop.wait(self.PERIOD):
            storage_now, stolen_now = self._storage_total(), self._stolen_total()
            if storage is not None and storage_now is not None:
                self.windows.append(storage_now - storage)
            if stolen is not None and stolen_now is not None:
                self.stolen.append(stolen_now - stolen)
            storage, stolen = storage_now, stolen_now

    def __enter__(self) -> MachineStalls:
        self._thread = threading.Thread(target=self._sample, name="machine-stalls", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def figures(self) -> dict:
        """`storage` and `host` figures, each None where not reported."""
        cores_ms = (os.cpu_count() or 1) * self.PERIOD * 1000  # the machine's CPU time in a period
        return {
            "storage": {
                "stalled_ms": round(sum(self.windows), 1), "worst_100ms_stalled_ms": round(max(self.windows), 1),
                "windows_mostly_stalled": sum(1 for w in self.windows if w > self.PERIOD * 1000 / 2),
            } if self.windows else None,
            "host": {
                "stolen_ms": round(sum(self.stolen)), "worst_100ms_stolen_ms": round(max(self.stolen)),
                "of_100ms": round(cores_ms),
                # a quarter of the machine gone for 100 ms: enough to hold up a whole batch
                "windows_quarter_stolen": sum(1 for w in self.stolen if w >= cores_ms / 4),
            } if self.stolen else None,
        }


def postgresql_processes() -> list[int]:
    """Every PostgreSQL server process on this machine: the postmaster and its children."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as comm:
                    if comm.read().strip() == "postgres":
                        pids.append(int(entry))
            except OSError:  # gone meanwhile
                continue
    return pids


class DatabaseFreezes:
    """While in a `with` block, stops the database server for `ms` every `every` seconds
    (SIGSTOP to each of its processes, then SIGCONT): the storage freezes this machine has on
    its own (the disk completing nothing for 100 ms or more), made on purpose and alike for
    ours and the baseline, so that how each recovers from one can be measured. Off unless
    `BENCH_FREEZE_MS` is set; it needs the right to signal PostgreSQL's processes."""

    def __init__(self, ms: float = FREEZE_MS, every: float = FREEZE_EVERY, processes=postgresql_processes) -> None:
        self.ms, self.every = ms, every
        self.processes = processes
        self.count = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _freeze_once(self) -> None:
        stopped = []
        try:
            for pid in self.processes():
                try:
                    os.kill(pid, signal.SIGSTOP)
                    stopped.append(pid)
                except ProcessLookupError:
                    continue
            time.sleep(self.ms / 1000)
        finally:  # whatever happens, the server goes on
            for pid in stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        self.count += 1

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._freeze_once()

    def __enter__(self) -> DatabaseFreezes:
        if not self.ms:
            return self
        pids = self.processes()
        if not pids:
            raise RuntimeError("BENCH_FREEZE_MS: no PostgreSQL process on this machine to stop")
        try:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):  # one that ended meanwhile
                    os.kill(pid, 0)
        except PermissionError:
            raise RuntimeError("BENCH_FREEZE_MS: no right to signal PostgreSQL's processes "
                               "(run the benchmark as root or as their user)") from None
        self._thread = threading.Thread(target=self._run, name="database-freezes", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def figures(self) -> dict:
        """How often the server was stopped and for how long; nothing when freezes are off."""
        return {"freezes": {"count": self.count, "each_ms": self.ms}} if self.ms else {}


def cpu_ms_per(before: dict[str, float], after: dict[str, float], count: int) -> dict[str, float]:
    return {k: round((after[k] - before.get(k, 0.0)) * 1000 / max(count, 1), 2) for k in after}


def settle_heap() -> None:
    """Before a measured round: collect, then move every object alive into the permanent
    generation (`gc.freeze`), where the collector no longer walks them.

    This process keeps every command's record for the whole run (tens of thousands of them
    by the paced rounds), and each full collection during a round walked them all: at 600
    commands/s it stopped this process, the commands' client and the baseline's producers
    and relay alike, for 50 to 157 ms twice in each 15 s round, and the commands scheduled
    meanwhile were sent that much late. That is the load generator's pause, not the system
    measured. During the round the young generations are collected as ever (most garbage
    dies young) and full collections wait, as during a rebuild (`FULL_COLLECTION_EVERY`): the
    next round's start collects what they would have."""
    from shared.projection import FULL_COLLECTION_EVERY

    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


async def repeat_for(seconds: float, label: str, steps: list) -> None:
    """Each of `steps` (async callables) run over and over, each in its own loop, for
    `seconds`: the closed loop of a saturation run, with a progress bar of the seconds."""
    import asyncio

    settle_heap()
    stop_at = time.monotonic() + seconds
    progress = Progress(label, int(seconds))

    async def loop(step) -> None:
        while time.monotonic() < stop_at:
            await step()

    async def tick() -> None:
        while time.monotonic() < stop_at:
            await asyncio.sleep(1)
            progress.advance()

    try:
        await asyncio.gather(tick(), *(loop(step) for step in steps))
    finally:
        progress.close()


async def open_loop(rate: float, count: int, label: str, one) -> None:
    """`one(at)` called `count` times at `rate` per second, `at` being its scheduled wall-clock
    time, without waiting for earlier calls: latency is counted from `at`, so a stall delays
    every later call's count too (no coordinated omission)."""
    import asyncio

    settle_heap()
    progress = Progress(label, count)
    began, began_wall = time.monotonic(), time.time()

    async def run(at: float) -> None:
        await one(at)
        progress.advance()

    tasks = []
    try:
        for i in range(count):
            delay = began + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(run(began_wall + i / rate)))
        await asyncio.gather(*tasks)
    finally:
        progress.close()
