"""`wfh`: the operator's command line.

  wfh send SERVICE TYPE [PAYLOAD_JSON] --as PERSON | --admin   send a command or query as an actor
  wfh dlq list                                                  dead-letter queues and their depth
  wfh dlq show QUEUE [--limit N]                                the dead letters of a queue, with reasons
  wfh dlq redrive QUEUE [--limit N]                             put dead letters back on their queue
  wfh migrate SERVICE...                                        apply pending migrations (as the owner role if set)
  wfh rebuild SERVICE                                           drop and rebuild a service's projections
  wfh verify SERVICE [--public-key FILE]                        detect any tampering with stored events
  wfh report [--day D | --from D --to D] [--out DIR]            show a report and export its JSON/HTML/PDF
  wfh lag                                                       outbox lag per service, depth per queue
  wfh health                                                    database and broker reachability per service
  wfh republish [TARGET]                                        every service re-sends its events to TARGET (reporting)

Tokens are development tokens signed by .run/dev-idp.pem (the key `make run` creates).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import aio_pika

from shared import topology
from shared.auth import ADMIN_SCOPE, DevIdentityProvider
from shared.client import CommandClient
from shared.healthcheck import check
from shared.observability import configure_logging
from shared.settings import Settings

RUN_DIR = Path(__file__).parents[1] / ".run"
DEFAULT_TENANT = "so-tttt-thanhhoa"
DLQ_SUFFIX = ".dlq"


def _settings(service: str = "roster") -> Settings:
    return Settings.from_env(service)


def _dev_idp() -> DevIdentityProvider:
    key_file = os.environ.get("WFH_DEV_IDP_KEY_FILE", str(RUN_DIR / "dev-idp.pem"))
    return DevIdentityProvider.load_or_create(Path(key_file), os.environ.get("WFH_JWT_ISSUER", "wfh-dev-idp"))


async def cmd_send(args) -> int:
    idp = _dev_idp()
    token = (
        idp.mint("it-admin", args.tenant, scopes=(ADMIN_SCOPE,)) if args.admin
        else idp.mint(args.actor, args.tenant)
    )
    payload = json.loads(args.payload) if args.payload else {}
    settings = _settings(args.service)
    async with CommandClient(settings.amqp_url, settings.namespace) as client:
        try:
            reply = await client.send(args.service, args.type, payload, tenant=args.tenant,
                                      token=token, timeout=args.timeout)
        except TimeoutError:
            print(f"no reply from {args.service} within {args.timeout:g} s: is it running "
                  f"(make run)? `wfh lag` shows whether its command queue has a consumer.",
                  file=sys.stderr)
            return 3
    print(reply.model_dump_json(indent=2, exclude_none=True))
    return 0 if reply.ok else 2


async def _queues(channel, namespace: str) -> list[tuple[str, int, int]]:
    rows = []
    for name in topology.all_queues(namespace):
        for queue_name in (name, topology.dead_letter_queue(name)):
            queue = await channel.declare_queue(queue_name, passive=True)
            rows.append((queue_name, queue.declaration_result.message_count,
                         queue.declaration_result.consumer_count))
    return rows


async def cmd_dlq(args) -> int:
    settings = _settings()
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        if args.action == "list":
            for name, depth, _ in await _queues(channel, settings.namespace):
                if name.endswith(DLQ_SUFFIX):
                    print(f"{depth:8d}  {name}")
            return 0
        queue_name = args.queue if args.queue.endswith(DLQ_SUFFIX) else args.queue + DLQ_SUFFIX
        dlq = await channel.declare_queue(queue_name, passive=True)
        # Only what is there now: a re-driven message that fails again comes back behind these,
        # and must wait for the next fix, not go round again in this run.
        present = dlq.declaration_result.message_count
        handled = 0
        held = []
        while handled < min(args.limit, present):
            message = await dlq.get(no_ack=False, fail=False)
            if message is None:
                break
            handled += 1
            headers = dict(message.headers or {})
            reason = headers.get("x-wfh-reason") or _death_reason(headers)
            if args.action == "show":
                print(json.dumps({
                    "message_id": message.message_id, "type": message.type,
                    "reason": _text(reason), "failed_at": _text(headers.get("x-wfh-failed-at")),
                    "body": message.body[:500].decode(errors="replace"),
                }, ensure_ascii=False))
                held.append(message)  # returned to the queue below, after we stop reading
            else:
                original = _text(headers.get("x-wfh-queue")) or queue_name[: -len(DLQ_SUFFIX)]
                clean = {k: v for k, v in headers.items()
                         if not k.startswith("x-wfh-") and not k.startswith("x-death")
                         and k not in ("x-first-death-exchange", "x-first-death-queue",
                                       "x-first-death-reason", "x-delivery-count")}
                await channel.default_exchange.publish(
                    aio_pika.Message(message.body, headers=clean, content_type=message.content_type,
                                     message_id=message.message_id, type=message.type,
                                     correlation_id=message.correlation_id,
                                     delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=original,
                )
                await message.ack()
        for message in held:
            await message.nack(requeue=True)
        verb = "shown" if args.action == "show" else "re-driven"
        print(f"{handled} dead letter(s) {verb} from {queue_name}", file=sys.stderr)
    return 0


def _death_reason(headers: dict) -> str | None:
    deaths = headers.get("x-death") or []
    return f"broker: {_text(deaths[0].get('reason'))}" if deaths else None


def _text(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else (None if value is None else str(value))


async def cmd_migrate(args) -> int:
    """Apply services' pending migrations: a deployment's one-shot step, run with each
    service's WFH_<SERVICE>_MIGRATION_DATABASE_URL, so that the services themselves never
    hold the schema owner's password."""
    import importlib

    from shared.migrations import migrate_service

    for service in args.services:
        definition = importlib.import_module(f"services.{service}.app").definition()
        applied = await migrate_service(Settings.from_env(service), definition.migrations)
        print(f"{service}: {len(applied)} migration(s) applied")
        for name in applied:
            print(f"  {name}")
    return 0


async def cmd_rebuild(args) -> int:
    from ops.replay import rebuild

    results = await rebuild(args.service)
    for name, (count, identical) in results.items():
        print(f"{args.service}/{name}: replayed {count} events; "
              f"{'identical to before' if identical else 'DIFFERENT from before'}")
    return 0 if all(same for _, same in results.values()) else 1


async def cmd_lag(args) -> int:
    settings = _settings()
    for service in topology.COMMAND_SERVICES:
        report = await check(Settings.from_env(service))
        print(f"outbox  {service:10} {report.get('relay_lag', 'n/a')!s:>8} events not yet published")
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        for name, depth, consumers in await _queues(await connection.channel(), settings.namespace):
            print(f"queue   {name:45} {depth:8d} waiting, {consumers} consumer(s)")
    return 0


async def cmd_health(args) -> int:
    """Ask each service over AMQP; for one that does not answer, check its database and broker."""
    healthy = True
    settings = _settings()
    async with CommandClient(settings.amqp_url, settings.namespace) as client:
        for service in topology.COMMAND_SERVICES:
            try:
                reply = await client.send(service, "Health", tenant=DEFAULT_TENANT, token=None,
                                          timeout=args.timeout)
                report = {**reply.result, "answers": True}
            except TimeoutError:
                report = {**await check(Settings.from_env(service)), "answers": False,
                          "healthy": False}
            healthy &= bool(report["healthy"])
            print(json.dumps(report, ensure_ascii=False))
    return 0 if healthy else 1


async def cmd_verify(args) -> int:
    """Recompute a service's event hash chain and check its signed checkpoints."""
    import asyncpg

    from shared.chain import load_public_key
    from shared.eventstore import verify_store

    public_key = None
    if args.public_key:
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        text = Path(args.public_key).read_bytes()
        public_key = load_pem_public_key(text) if text.startswith(b"-----") else load_public_key(text.decode())
    conn = await asyncpg.connect(Settings.from_env(args.service).database_url)
    try:
        verdict = await verify_store(conn, public_key)
    finally:
        await conn.close()
    print(json.dumps({"service": args.service, "intact": verdict.intact, "events": verdict.events,
                      "unchained_before_chain": verdict.unchained,
                      "checkpoints": verdict.checkpoints, "problems": verdict.problems},
                     ensure_ascii=False, indent=2))
    return 0 if verdict.intact else 1


async def cmd_republish(args) -> int:
    """Refill a consumer's lost store: every other service republishes its events to it."""
    from shared.republish import replay_all

    token = _dev_idp().mint("it-admin", args.tenant, scopes=(ADMIN_SCOPE,))
    settings = _settings()
    async with CommandClient(settings.amqp_url, settings.namespace) as client:
        async def send(service, command, payload):
            return await client.send(service, command, payload, tenant=args.tenant, token=token,
                                     timeout=args.timeout)

        for service in topology.COMMAND_SERVICES:
            if service != args.target:
                count = await replay_all(send, service, args.target)
                print(f"{service}: {count} events republished to {args.target}")
    return 0


async def cmd_report(args) -> int:
    """Ask reporting for a report; print its summary, and write its files with --out."""
    import base64

    spec = json.loads((Path(__file__).parents[1] / "services/roster/demo/department.json").read_text())
    actor = args.actor or next(p["id"] for p in spec["people"] if "chief_of_office" in p["roles"])
    payload = {"kind": "period" if (args.start or args.end) else "daily", "locale": args.locale,
               "include_files": bool(args.out)}
    for key in ("day", "start", "end", "as_of"):
        if getattr(args, key):
            payload[key] = getattr(args, key)
    settings = _settings("reporting")
    async with CommandClient(settings.amqp_url, settings.namespace) as client:
        reply = await client.send("reporting", "GenerateReport", payload, tenant=args.tenant,
                                  token=_dev_idp().mint(actor, args.tenant), timeout=args.timeout)
    if not reply.ok:
        print(reply.model_dump_json(indent=2, exclude_none=True))
        return 2
    result = reply.result
    print(result["title"])
    for line in result.get("summary", []):
        print(f"  • {line}")
    if args.json:
        print(json.dumps(result["report"], ensure_ascii=False, indent=2))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = Path(result["files"]["pdf"]).stem
        (out / f"{stem}.json").write_text(json.dumps(result["report"], ensure_ascii=False, indent=2))
        (out / f"{stem}.html").write_bytes(base64.b64decode(result["html_base64"]))
        (out / f"{stem}.pdf").write_bytes(base64.b64decode(result["pdf_base64"]))
        print(f"written: {out / stem}.{{json,html,pdf}}", file=sys.stderr)
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="wfh", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = root.add_subparsers(dest="command", required=True)

    send = sub.add_parser("send", help="send a command or query as an actor")
    send.add_argument("service")
    send.add_argument("type", help="command or query name, e.g. RequestLeave")
    send.add_argument("payload", nargs="?", help="JSON payload")
    who = send.add_mutually_exclusive_group(required=True)
    who.add_argument("--as", dest="actor", help="person id of the actor")
    who.add_argument("--admin", action="store_true", help="act as the IT team (directory admin)")
    send.add_argument("--tenant", default=DEFAULT_TENANT)
    send.add_argument("--timeout", type=float, default=10.0)
    send.set_defaults(run=cmd_send)

    dlq = sub.add_parser("dlq", help="inspect and re-drive dead letters")
    dlq_sub = dlq.add_subparsers(dest="action", required=True)
    dlq_sub.add_parser("list", help="dead-letter queues and their depth").set_defaults(run=cmd_dlq)
    for action, text in (("show", "print dead letters with their reasons (they stay queued)"),
                         ("redrive", "move dead letters back onto their queue after a fix")):
        p = dlq_sub.add_parser(action, help=text)
        p.add_argument("queue", help="the queue (or its .dlq)")
        p.add_argument("--limit", type=int, default=100)
        p.set_defaults(run=cmd_dlq)

    migrate = sub.add_parser("migrate", help="apply pending migrations, as the migration role if set")
    migrate.add_argument("services", nargs="+", choices=topology.COMMAND_SERVICES, metavar="SERVICE")
    migrate.set_defaults(run=cmd_migrate)
    rebuild = sub.add_parser("rebuild", help="drop and rebuild a service's projections")
    rebuild.add_argument("service")
    rebuild.set_defaults(run=cmd_rebuild)
    verify = sub.add_parser("verify", help="check a service's event hash chain and signed checkpoints")
    verify.add_argument("service")
    verify.add_argument("--public-key", help="pin the checkpoint key (PEM or raw base64 file)")
    verify.set_defaults(run=cmd_verify)
    sub.add_parser("lag", help="outbox lag and queue depths").set_defaults(run=cmd_lag)
    health = sub.add_parser("health", help="ask every service how it is (over AMQP)")
    health.add_argument("--timeout", type=float, default=3.0)
    health.set_defaults(run=cmd_health)
    report = sub.add_parser("report", help="show a report (daily by default) and export its files")
    report.add_argument("--day", help="YYYY-MM-DD (today by default)")
    report.add_argument("--from", dest="start", help="period start, YYYY-MM-DD")
    report.add_argument("--to", dest="end", help="period end, YYYY-MM-DD")
    report.add_argument("--as-of", dest="as_of", help="the stream as it stood then (ISO time with zone)")
    report.add_argument("--locale", choices=("vi", "en"), default="vi")
    report.add_argument("--as", dest="actor", help="person asking (the Chief of Office by default)")
    report.add_argument("--out", help="folder to write the JSON, HTML and PDF into")
    report.add_argument("--json", action="store_true", help="print the report's JSON too")
    report.add_argument("--tenant", default=DEFAULT_TENANT)
    report.add_argument("--timeout", type=float, default=60.0)
    report.set_defaults(run=cmd_report)

    republish = sub.add_parser("republish", help="refill a consumer's store from every service's events")
    republish.add_argument("target", nargs="?", default="reporting")
    republish.add_argument("--tenant", default=DEFAULT_TENANT)
    republish.add_argument("--timeout", type=float, default=60.0)
    republish.set_defaults(run=cmd_republish)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    configure_logging("wfh-cli", os.environ.get("WFH_LOG_LEVEL", "WARNING"))
    return asyncio.run(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
