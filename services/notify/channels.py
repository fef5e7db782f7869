"""The channels a delivery goes out on: AMQP for chat bots, SMTP for email.

Each `send` returns when the channel accepted the message (the broker confirmed it, the mail
server answered 250) or raises `DeliveryError` saying whether trying again can help.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, parseaddr

import aio_pika
import asyncpg

from shared.topology import notifications_exchange
from services.notify.config import NotifyConfig
from services.notify.routing import division_key
from services.notify.templates import email_footer


class DeliveryError(Exception):
    def __init__(self, reason: str, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason[:1000]
        self.permanent = permanent


@dataclass(frozen=True)
class Outgoing:
    """One delivery with its notification, as read (and locked) from the outbox."""

    delivery_id: uuid.UUID
    notification_id: uuid.UUID
    tenant: str
    channel: str
    address: str
    attempts: int
    recipient_id: str
    division_id: str
    source_event_id: uuid.UUID
    source_event_type: str
    correlation_id: uuid.UUID
    kind: str
    category: str
    urgent: bool
    locale: str
    title: str
    body: str
    created_at: datetime
    department_name: str

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Outgoing:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


class BotChannel:
    """Publishes to the notifications exchange: routing key `<tenant>.person.<id>` and the CC
    key `<tenant>.division.<id>`, persistent, awaiting the broker's confirm. The message id is
    the delivery id, so a bot drops the rare duplicate after a crash between send and record."""

    def __init__(self, amqp_url: str, namespace: str) -> None:
        self._url = amqp_url
        self._exchange_name = notifications_exchange(namespace)
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._exchange = None

    async def open(self) -> None:
        self._connection = await aio_pika.connect_robust(self._url)
        channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await channel.get_exchange(self._exchange_name, ensure=False)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def send(self, out: Outgoing) -> None:
        body = {
            "delivery_id": str(out.delivery_id), "notification_id": str(out.notification_id),
            "tenant": out.tenant, "recipient_id": out.recipient_id, "division_id": out.division_id,
            "kind": out.kind, "category": out.category, "urgent": out.urgent,
            "source_event_id": str(out.source_event_id), "source_event_type": out.source_event_type,
            "locale": out.locale, "title": out.title, "body": out.body,
            "created_at": out.created_at.isoformat(),
        }
        message = aio_pika.Message(
            json.dumps(body, ensure_ascii=False).encode(),
            content_type="application/json", content_encoding="utf-8",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(out.delivery_id), correlation_id=str(out.correlation_id), type=out.kind,
            headers={"CC": [division_key(out.tenant, out.division_id)], "tenant": out.tenant,
                     "recipient_id": out.recipient_id, "urgent": out.urgent},
        )
        try:
            await self._exchange.publish(message, routing_key=out.address, timeout=10)
        except Exception as exc:
            raise DeliveryError(f"AMQP: {type(exc).__name__}: {exc}") from exc


class EmailChannel:
    """SMTP to the department's mail server (plain, STARTTLS or TLS; login when configured).
    A 5xx answer is permanent; 4xx answers and connection failures are tried again."""

    def __init__(self, config: NotifyConfig) -> None:
        self.config = config

    def message(self, out: Outgoing) -> MIMEText:
        """Built with the legacy email API on purpose: the modern one's header folding drops the
        space between two encoded words, which mangles Vietnamese subjects."""
        msg = MIMEText(
            f"{out.body}\n\n-- \n{email_footer(out.locale, out.department_name)}\n", "plain", "utf-8"
        )
        name, address = parseaddr(self.config.smtp_from)
        msg["From"] = formataddr((name, address), "utf-8")
        msg["To"] = out.address
        msg["Subject"] = Header(out.title, "utf-8")
        msg["Date"] = format_datetime(out.created_at)
        msg["Message-ID"] = f"<{out.delivery_id}@wfh.notify>"
        msg["X-WFH-Notification"] = str(out.notification_id)
        if out.urgent:
            msg["Importance"] = "high"
        return msg

    async def send(self, out: Outgoing) -> None:
        await asyncio.to_thread(self._send, self.message(out))

    def _send(self, msg: MIMEText) -> None:
        c = self.config
        try:
            if c.smtp_tls == "ssl":
                smtp = smtplib.SMTP_SSL(c.smtp_host, c.smtp_port, timeout=c.smtp_timeout_seconds,
                                        context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(c.smtp_host, c.smtp_port, timeout=c.smtp_timeout_seconds)
            with smtp:
                if c.smtp_tls == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if c.smtp_user:
                    smtp.login(c.smtp_user, c.smtp_password)
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            answer = "; ".join(f"{code} {_text(text)}" for code, text in exc.recipients.values())
            raise DeliveryError(f"SMTP recipient refused: {answer}", all(c >= 500 for c in codes)) from exc
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"SMTP {exc.smtp_code} {_text(exc.smtp_error)}", permanent=exc.smtp_code >= 500
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP: {type(exc).__name__}: {exc}") from exc


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
