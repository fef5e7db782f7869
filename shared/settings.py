"""One settings object per service, read from the environment, with defaults for a developer machine."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


# The services' own database sessions (their pool, the relay's connection). The tables a
# service reads while it decides or applies an event (command replies, the directory, the
# store's head, the inbox) start empty and grow fast with the morning's burst. Planned from
# statistics gathered while they were tiny (an ANALYZE, autovacuum's first pass, and none
# again for a while), a lookup by key scans the whole table, under the append lock: with the
# plan PostgreSQL caches for a prepared statement (`auto`), and even planned at each execution
# (`force_custom_plan`, which also cost PostgreSQL about 40 % of its CPU at half rate). With
# sequential scans priced out where an index serves, the cached plans stay lookups; a
# statement no index serves still scans (tests/integration/test_query_plans.py).
DATABASE_SESSION = {"plan_cache_mode": "auto", "enable_seqscan": "off"}


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class Settings:
    service: str
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    database_url: str = ""
    # The schema owner's URL (WFH_<SERVICE>_MIGRATION_DATABASE_URL). Given, migrations run as
    # that role and `database_url`'s role gets only the privileges the service needs (stored
    # events append-only); absent, `database_url`'s role migrates and owns the tables.
    migration_database_url: str = ""
    # Prefix of every exchange and queue name: lets test runs and deployments share a broker.
    namespace: str = "wfh"
    jwt_public_key_pem: bytes = b""
    jwt_issuer: str = "wfh-dev-idp"
    relay_batch_size: int = 500
    relay_poll_seconds: float = 1.0
    consumer_prefetch: int = 100  # commands answered at once
    command_batch: int = 32  # commands decided together in one transaction, at most
    event_batch: int = 200  # events an event consumer holds and applies in one transaction
    handler_attempts: int = 5
    # Deliveries acknowledged together within this long (0: each at once; see shared.acks).
    ack_delay_seconds: float = 0.1
    command_timeout_seconds: float = 10.0
    # Off where an administrator provisions the broker (least-privilege users cannot declare
    # other services' queues); the definitions then come from `python -m ops.broker_definitions`.
    declare_topology: bool = True
    # The key signing checkpoints of the event hash chain; created on first use if missing.
    chain_key_file: str = ""
    chain_checkpoint_seconds: float = 60.0
    metrics_sample_seconds: float = 5.0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def events_exchange(self) -> str:
        return f"{self.namespace}.events"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.namespace}.dead-letters"

    @property
    def command_queue(self) -> str:
        return command_queue(self.namespace, self.service)

    @classmethod
    def from_env(cls, service: str) -> Settings:
        key_pem = os.environ.get("WFH_JWT_PUBLIC_KEY", "").encode()
        key_file = os.environ.get("WFH_JWT_PUBLIC_KEY_FILE")
        if not key_pem and key_file and Path(key_file).exists():
            key_pem = Path(key_file).read_bytes()
        upper = service.upper()
        return cls(
            service=service,
            amqp_url=_env("WFH_AMQP_URL", cls.amqp_url),
            database_url=os.environ.get(f"WFH_{upper}_DATABASE_URL")
            or os.environ.get("WFH_DATABASE_URL")
            # One variable for all services' databases, e.g. ".../e2e_{service}" in tests.
            or _env("WFH_DATABASE_URL_TEMPLATE", "postgresql://postgres@127.0.0.1:5432/wfh_{service}")
            .format(service=service),
            migration_database_url=os.environ.get(f"WFH_{upper}_MIGRATION_DATABASE_URL", ""),
            namespace=_env("WFH_NAMESPACE", cls.namespace),
            jwt_public_key_pem=key_pem,
            jwt_issuer=_env("WFH_JWT_ISSUER", cls.jwt_issuer),
            relay_batch_size=int(_env("WFH_RELAY_BATCH_SIZE", str(cls.relay_batch_size))),
            consumer_prefetch=int(_env("WFH_CONSUMER_PREFETCH", str(cls.consumer_prefetch))),
            event_batch=int(_env("WFH_EVENT_BATCH", str(cls.event_batch))),
            command_batch=int(_env("WFH_COMMAND_BATCH", str(cls.command_batch))),
            handler_attempts=int(_env("WFH_HANDLER_ATTEMPTS", str(cls.handler_attempts))),
            ack_delay_seconds=float(_env("WFH_ACK_DELAY_SECONDS", str(cls.ack_delay_seconds))),
            chain_key_file=_env("WFH_CHAIN_KEY_FILE", f".run/chain-keys/{service}.pem"),
            chain_checkpoint_seconds=float(_env("WFH_CHAIN_CHECKPOINT_SECONDS", "60")),
            metrics_sample_seconds=float(_env("WFH_METRICS_SAMPLE_SECONDS", "5")),
            declare_topology=_env("WFH_DECLARE_TOPOLOGY", "true").lower() not in ("0", "false", "no"),
        )


def command_queue(namespace: str, service: str) -> str:
    return f"{namespace}.{service}.commands"
