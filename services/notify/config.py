"""Notify's own settings (web server, SMTP, retries), from the environment, with a clock to inject."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from services.notify.rules import RULES, Rule


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class NotifyConfig:
    http_host: str = "127.0.0.1"
    http_port: int = 8084  # 0: any free port (tests)
    # SMTP to the department's mail server; an empty host turns the email channel off.
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_tls: Literal["none", "starttls", "ssl"] = "none"
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_from: str = "Hệ thống điều hành trực tuyến <thongbao@localhost>"
    smtp_timeout_seconds: float = 10.0
    # A failing delivery is tried this many times in all, waiting base, 2 base, 4 base... between.
    max_attempts: int = 8
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    poll_seconds: float = 1.0
    clock: Callable[[], datetime] = utc_now
    rules: tuple[Rule, ...] = RULES

    @property
    def email_enabled(self) -> bool:
        return bool(self.smtp_host)

    @classmethod
    def from_env(cls) -> NotifyConfig:
        env = os.environ.get
        password = env("WFH_SMTP_PASSWORD", "")
        password_file = env("WFH_SMTP_PASSWORD_FILE")
        if not password and password_file and Path(password_file).exists():
            password = Path(password_file).read_text().strip()
        tls = env("WFH_SMTP_TLS", "none")
        if tls not in ("none", "starttls", "ssl"):
            raise ValueError(f"WFH_SMTP_TLS must be none, starttls or ssl, not {tls!r}")
        return cls(
            http_host=env("WFH_NOTIFY_HTTP_HOST", cls.http_host),
            http_port=int(env("WFH_NOTIFY_HTTP_PORT", str(cls.http_port))),
            smtp_host=env("WFH_SMTP_HOST", cls.smtp_host),
            smtp_port=int(env("WFH_SMTP_PORT", "465" if tls == "ssl" else "587" if tls == "starttls" else "25")),
            smtp_tls=tls,  # type: ignore[arg-type]
            smtp_user=env("WFH_SMTP_USER", ""),
            smtp_password=password,
            smtp_from=env("WFH_SMTP_FROM", cls.smtp_from),
            max_attempts=int(env("WFH_NOTIFY_MAX_ATTEMPTS", str(cls.max_attempts))),
            retry_base_seconds=float(env("WFH_NOTIFY_RETRY_BASE_SECONDS", str(cls.retry_base_seconds))),
            poll_seconds=float(env("WFH_NOTIFY_POLL_SECONDS", str(cls.poll_seconds))),
        )
