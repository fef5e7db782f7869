"""The services as separate processes (as `make run` starts them), in the benchmark's own
namespace and databases, with their peak memory read from /proc before they stop."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import aio_pika

from bench.common import AMQP_URL, RUN_ID, database_url, say
from shared import topology
from shared.client import CommandClient
from shared.migrations import drop_database

ROOT = Path(__file__).parents[1]
WANTED = ("roster", "leave", "notify", "documents", "reporting")


def available_services() -> list[str]:
    """The services built when the benchmark runs (each has `services/<name>/app.py`)."""
    return [s for s in WANTED if (ROOT / "services" / s / "app.py").exists()]


def peak_memory_kib(pid: int) -> dict[str, int]:
    """VmHWM (peak resident set) and VmRSS of a process, in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0])
    return out


class ServiceProcesses:
    def __init__(self, services: list[str], idp, clock_spec: str, workdir: Path,
                 extra_env: dict[str, str] | None = None) -> None:
        self.services = services
        self.namespace = f"bench{RUN_ID}"
        self.idp = idp
        self.clock_spec = clock_spec
        self.workdir = workdir
        self.extra_env = extra_env or {}
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.peaks: dict[str, dict[str, int]] = {}

    def database(self, service: str) -> str:
        return database_url(service)

    def env(self, service: str) -> dict[str, str]:
        key = self.workdir / "idp.pub.pem"
        key.write_bytes(self.idp.public_key_pem)
        return {
            **os.environ,
            "WFH_NAMESPACE": self.namespace,
            "WFH_AMQP_URL": AMQP_URL,
            f"WFH_{service.upper()}_DATABASE_URL": self.database(service),
            "WFH_JWT_PUBLIC_KEY_FILE": str(key),
            "WFH_JWT_ISSUER": self.idp.issuer,
            "WFH_CHAIN_KEY_FILE": str(self.workdir / f"chain-{service}.pem"),
            "WFH_NOTIFY_HTTP_PORT": "0",
            "WFH_REPORTING_DIR": str(self.workdir / "reports"),
            "WFH_LOG_LEVEL": os.environ.get("BENCH_SERVICE_LOG_LEVEL", "WARNING"),
            "BENCH_CLOCK": self.clock_spec,
            **self.extra_env,
        }

    async def start(self) -> None:
        for service in self.services:
            log = (self.workdir / f"{service}.log").open("ab")
            self.processes[service] = await asyncio.create_subprocess_exec(
                *(os.environ.get("BENCH_SERVE_CMD", f"{sys.executable} -m bench.serve").split()), service, cwd=ROOT, env=self.env(service),
                stdout=log, stderr=log,
            )

    async def wait_ready(self, client: CommandClient, timeout: float = 90) -> None:
        """Every service answers `Health` (no token needed) with a reachable database."""
        deadline = time.monotonic() + timeout
        for service in self.services:
            while True:
                self.check_alive()
                if await client.is_healthy(service, "bench"):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{service} did not answer within {timeout:.0f} s "
                                       f"(see {self.workdir / (service + '.log')})")
                await asyncio.sleep(0.3)

    def check_alive(self) -> None:
        for service, process in self.processes.items():
            if process.returncode is not None:
                raise RuntimeError(f"{service} exited with code {process.returncode} "
                                   f"(see {self.workdir / (service + '.log')})")

    def read_peaks(self) -> dict[str, dict[str, int]]:
        for service, process in self.processes.items():
            if process.returncode is None:
                try:
                    self.peaks[service] = peak_memory_kib(process.pid)
                except OSError:
                    pass
        return self.peaks

    async def stop(self) -> None:
        self.read_peaks()
        for process in self.processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for service, process in self.processes.items():
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                say(f"  ! {service} did not stop in 20 s: killed")
                process.kill()
                await process.wait()

    async def remove(self) -> None:
        """Delete the namespace's queues and exchanges and drop the databases."""
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            await topology.delete(await connection.channel(), self.namespace)
        for service in self.services:
            await drop_database(self.database(service))


def new_id() -> str:
    return str(uuid.uuid4())
