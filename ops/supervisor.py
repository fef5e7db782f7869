"""`make run`: the services as separate processes under a supervisor, the demo department loaded.

A crashed service is restarted (with backoff); Ctrl-C stops every service cleanly.
Logs go to .run/logs/<service>.log; the development identity provider's keys to .run/.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from ops.demo import DemoError, load_department, play_demo_day, report_of_the_day
from ops.preflight import problems, HOW_TO_START
from shared.auth import DevIdentityProvider
from shared.client import CommandClient
from shared.settings import Settings

ROOT = Path(__file__).parents[1]
RUN_DIR = Path(os.environ.get("WFH_RUN_DIR", ROOT / ".run")).resolve()
SERVICES = ("roster", "leave", "notify", "documents", "reporting")


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def say(text: str) -> None:
    print(text, flush=True)


class Supervised:
    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.env = env
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self.stopping = False
        self.log_path = RUN_DIR / "logs" / f"{name}.log"

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", f"services.{self.name}", cwd=ROOT, env=self.env,
            stdout=log, stderr=log,
        )

    async def watch(self) -> None:
        """Restart the service whenever it dies, unless we are stopping."""
        while not self.stopping:
            assert self.process is not None
            code = await self.process.wait()
            if self.stopping:
                return
            self.restarts += 1
            delay = min(2 ** self.restarts, 30)
            say(f"  ! {self.name} exited with code {code}; restarting in {delay}s "
                f"(see {_shown(self.log_path)})")
            await asyncio.sleep(delay)
            if not self.stopping:
                await self.start()

    async def stop(self) -> None:
        self.stopping = True
        if self.process and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()


async def stop_all(services: list[Supervised]) -> None:
    """Stop every service at once. Ctrl-C reaches the services too, and each stops on its own
    meanwhile: none of those exits may read as a crash to restart."""
    for service in services:
        service.stopping = True
    await asyncio.gather(*(service.stop() for service in services))


async def wait_until_answering(client: CommandClient, tenant: str) -> None:
    """Each service answers `Health` (no token: a query of anything else as the IT admin was
    refused by reporting, a warning in its log at every start) with its database reachable."""
    deadline = time.monotonic() + 60
    for service in SERVICES:
        while not await client.is_healthy(service, tenant):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{service} did not answer within 60 s")
            await asyncio.sleep(0.5)
        say(f"  ✓ {service} answers")


def notify_where_to_look(idp: DevIdentityProvider, namespace: str) -> list[str]:
    """The notifications page (signed in as the demo day's division head), bots, email."""
    import json

    from ops.demo import DEPARTMENT_FILE
    from services.notify.config import NotifyConfig
    from shared.topology import notifications_exchange

    spec = json.loads(DEPARTMENT_FILE.read_text())
    head = next(p for p in spec["people"] if p["division_id"] == "cntt" and "division_head" in p["roles"])
    config = NotifyConfig.from_env()
    host = "127.0.0.1" if config.http_host in ("0.0.0.0", "") else config.http_host
    token = idp.mint(head["id"], spec["tenant"], ttl_seconds=12 * 3600)
    email = (f"email via {config.smtp_host}:{config.smtp_port}" if config.email_enabled
             else "email off (set WFH_SMTP_HOST, WFH_SMTP_PORT, WFH_SMTP_TLS, WFH_SMTP_USER, WFH_SMTP_PASSWORD)")
    return [
        f"  Notifications page ({head['full_name']}, the head who approved the demo leave):",
        f"    http://{host}:{config.http_port}/#token={token}",
        f"  Chat bots: bind a queue to exchange {notifications_exchange(namespace)} with "
        f"{spec['tenant']}.person.<id> or {spec['tenant']}.division.<id>; {email}",
    ]


async def main() -> int:
    say("Checking RabbitMQ and PostgreSQL…")
    found = await problems()
    if found:
        for problem in found:
            say(f"  ✗ {problem}")
        say(HOW_TO_START)
        return 1
    say("  ✓ both answer")

    idp = DevIdentityProvider.load_or_create(RUN_DIR / "dev-idp.pem")
    public_key_file = RUN_DIR / "dev-idp.pub.pem"
    env = {**os.environ, "WFH_JWT_PUBLIC_KEY_FILE": str(public_key_file), "WFH_JWT_ISSUER": idp.issuer}
    env.setdefault("WFH_REPORTING_DIR", str(RUN_DIR / "reports"))
    settings = Settings.from_env("roster")

    say(f"Starting {', '.join(SERVICES)} (migrations run as each starts)…")
    services = [Supervised(name, env) for name in SERVICES]
    for service in services:
        await service.start()
    watchers = [asyncio.create_task(s.watch()) for s in services]

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    code = 0
    try:
        async with CommandClient(settings.amqp_url, settings.namespace) as client:
            tenant = "so-tttt-thanhhoa"
            await wait_until_answering(client, tenant)
            say("Loading the demo department…")
            summary = await load_department(client, idp)
            say(f"  ✓ {summary['name']}: {summary['divisions']} phòng/đơn vị, "
                f"{summary['people']} cán bộ, {summary['signing_keys']} khóa ký số mới")
            say("Playing a short demo day…")
            for line in await play_demo_day(client, idp):
                say(f"  • {line}")
            say("The Office's report of the day (reporting, from the event stream)…")
            lines, files = await report_of_the_day(client, idp)
            for line in lines:
                say(f"  • {line}")
            say(f"  HTML: {_shown(Path(files['html']))}")
            say(f"  PDF:  {_shown(Path(files['pdf']))}")
        say("")
        say("The system is up. Where to look:")
        for s in services:
            say(f"  {s.name:10} logs: {_shown(s.log_path)}")
        say(f"  RabbitMQ: exchange {settings.events_exchange}, queues {settings.namespace}.*"
            "  (rabbitmqctl list_queues name messages)")
        databases = ", ".join(
            Settings.from_env(s.name).database_url.rsplit("/", 1)[-1] for s in services
        )
        say(f"  PostgreSQL: databases {databases} (psql -h 127.0.0.1 -U postgres <database>)")
        for line in notify_where_to_look(idp, settings.namespace):
            say(line)
        otlp = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        say(f"  Traces: {'exported to ' + otlp if otlp else 'set OTEL_EXPORTER_OTLP_ENDPOINT to export them (make up runs Grafana)'}")
        say(f"  Development tokens are signed by {_shown(RUN_DIR / 'dev-idp.pem')}")
        say("Press Ctrl-C to stop.")
        await stop.wait()
    except (DemoError, RuntimeError) as exc:
        say(f"  ✗ {exc}")
        code = 1
    finally:
        say("Stopping…")
        await stop_all(services)
        for watcher in watchers:
            watcher.cancel()
        say("Stopped.")
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
