"""The whole system as `make run` starts it: separate processes under the supervisor, the demo
department and demo day, then the CLI and the Python client against it, traces over OTLP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aio_pika
import pytest

from shared import topology
from shared.auth import DevIdentityProvider
from shared.client import CommandClient
from shared.migrations import drop_database
from tests.conftest import AMQP_URL, PG_URL, TENANT
from tests.e2e.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]
DEMO = json.loads((ROOT / "services/roster/demo/department.json").read_text())
STARTUP_SECONDS = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> dict[str, int]:
    """The supervisor's service processes, by service name."""
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True)
    found = {}
    for line in out.stdout.splitlines():
        child_pid, args = line.strip().split(" ", 1)
        if "-m services." in args:
            found[args.split("-m services.", 1)[1].split()[0]] = int(child_pid)
    return found


class Supervisor:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.lines: list[str] = []
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ops.supervisor", cwd=ROOT, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process and self.process.stdout
        async for raw in self.process.stdout:
            self.lines.append(raw.decode().rstrip())

    async def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.process.returncode is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not printed; output:\n" + "\n".join(self.lines))
            await asyncio.sleep(0.2)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.process.wait(), 40)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await self._reader
        return self.process.returncode


async def cli(env: dict[str, str], *argv: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ops.cli", *argv, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode() + err.decode()


@pytest.fixture
async def running(tmp_path, run_id):
    namespace = f"e2e{run_id}{uuid.uuid4().hex[:4]}"
    receiver = OtlpReceiver()
    endpoint = await receiver.start()
    env = {
        **os.environ,
        "WFH_NAMESPACE": namespace,
        "WFH_DATABASE_URL_TEMPLATE": f"{PG_URL}/{namespace}_{{service}}",
        "WFH_RUN_DIR": str(tmp_path),
        "WFH_NOTIFY_HTTP_PORT": str(free_port()),
        "WFH_CHAIN_KEY_FILE": str(tmp_path / "chain.pem"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "WFH_METRICS_SAMPLE_SECONDS": "1",
        "WFH_DEV_IDP_KEY_FILE": str(tmp_path / "dev-idp.pem"),
    }
    supervisor = Supervisor(env)
    await supervisor.start()
    try:
        yield supervisor, env, receiver, namespace, tmp_path
    finally:
        code = await supervisor.stop()
        await receiver.stop()
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            await topology.delete(await connection.channel(), namespace)
        for service in topology.COMMAND_SERVICES:
            await drop_database(f"{PG_URL}/{namespace}_{service}")
        assert code == 0, supervisor.output
        assert "Stopped." in supervisor.output


async def test_make_run_plays_the_demo_day_and_answers_cli_client_and_traces(running):
    supervisor, env, receiver, namespace, run_dir = running
    await supervisor.wait_for("Press Ctrl-C to stop.", STARTUP_SECONDS)
    out = supervisor.output
    from ops.supervisor import SERVICES

    assert set(SERVICES) == set(topology.COMMAND_SERVICES)  # make run starts every service
    for service in SERVICES:
        assert f"✓ {service} answers" in out
    assert "46 cán bộ" in out
    assert "chữ ký số hợp lệ" in out                      # the head's signed leave approval
    assert "01/KH-STTTT" in out                            # the issued plan's number
    assert "Giám đốc đã phê duyệt" in out                  # the approved roster
    assert "The Office's report of the day" in out
    pdf = next(line.split("PDF:", 1)[1].strip() for line in supervisor.lines if "PDF:" in line)
    assert Path(pdf).read_bytes().startswith(b"%PDF")

    # The CLI, as an operator uses it.
    code, text = await cli(env, "health", "--timeout", "5")
    assert code == 0, text
    # One JSON line per service on stdout; log lines (JSON too) may come with them on stderr.
    health = [json.loads(line) for line in text.splitlines() if line.startswith("{") and '"healthy"' in line]
    assert len(health) == len(SERVICES) and all(h["healthy"] for h in health), text
    code, text = await cli(env, "send", "leave", "ListLeaveApplications", '{"status": "approved"}',
                           "--as", "nv-001")
    assert code == 0, text
    approved = json.loads(text)["result"]
    assert approved and approved[0]["signature"]
    applicant = approved[0]["person_id"]
    code, text = await cli(env, "verify", "leave")
    assert code == 0 and '"intact": true' in text, text

    # The Python client, as a frontend uses it.
    idp = DevIdentityProvider.load_or_create(run_dir / "dev-idp.pem")
    async with CommandClient(AMQP_URL, namespace) as client:
        async def applicant_told():
            reply = await client.send("notify", "ListNotifications", {}, tenant=TENANT,
                                      token=idp.mint(applicant, TENANT))
            assert reply.ok, reply.error
            items = reply.result["notifications"] if isinstance(reply.result, dict) else reply.result
            return [n for n in items if n.get("source_event_type") == "LeaveApproved"
                    or "nghỉ phép" in json.dumps(n, ensure_ascii=False)]
        deadline = time.monotonic() + 20
        while not (told := await applicant_told()):
            assert time.monotonic() < deadline, "the applicant was never told of the approval"
            await asyncio.sleep(0.5)
        assert "duyệt" in json.dumps(told, ensure_ascii=False)

        # The Office's report of today, from reporting's own copy of the stream.
        from shared.localtime import local_today

        chief = next(p["id"] for p in DEMO["people"] if "chief_of_office" in p["roles"])
        deadline = time.monotonic() + 30
        while True:
            reply = await client.send("reporting", "GenerateReport", {"day": local_today().isoformat()},
                                      tenant=TENANT, token=idp.mint(chief, TENANT), timeout=60)
            assert reply.ok, reply.error
            report = reply.result["report"]["day"]
            if report["leave"]["approved"] >= 1 and report["documents"]["issued"] >= 1:
                break
            assert time.monotonic() < deadline, json.dumps(report, ensure_ascii=False)[:2000]
            await asyncio.sleep(1)
        assert reply.result["summary"]

    # One trace spans at least three services (exported by the processes over OTLP).
    deadline = time.monotonic() + 20
    while not any(len(s) >= 3 for s in receiver.services_by_trace().values()):
        assert time.monotonic() < deadline, receiver.services_by_trace()
        await asyncio.sleep(0.5)

    # Metrics beside the traces, exported by every service process over OTLP.
    wanted = {"wfh.events.appended", "wfh.events.published", "wfh.events.consumed", "wfh.outbox.lag",
              "wfh.consumer.lag", "wfh.dead_letters", "wfh.command.duration"}
    deadline = time.monotonic() + 20
    while not (wanted <= set(receiver.metrics)
               and len(receiver.metrics["wfh.events.appended"]) == len(topology.COMMAND_SERVICES)):
        assert time.monotonic() < deadline, receiver.metrics
        await asyncio.sleep(0.5)

    # A killed service is restarted by the supervisor and answers again.
    pid = children(supervisor.process.pid)["leave"]
    os.kill(pid, signal.SIGKILL)
    await supervisor.wait_for("leave exited with code -9", 20)
    deadline = time.monotonic() + 60
    while True:
        code, text = await cli(env, "send", "leave", "GetLeaveBalance", "{}", "--as", applicant,
                               "--timeout", "3")
        if code == 0:
            break
        assert time.monotonic() < deadline, text
        await asyncio.sleep(1)
    assert children(supervisor.process.pid)["leave"] != pid
