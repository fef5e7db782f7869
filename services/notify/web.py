"""The web channel: a Server-Sent Events stream per signed-in user and a minimal page.

`GET /notifications/stream` needs the user's token (`Authorization: Bearer`, or
`?access_token=` for plain `EventSource` clients); without a valid one it answers 401 and
nothing else. It first replays what the client missed — everything after `Last-Event-ID`
(header or `?last_event_id=`), or the latest 50 when the client has seen nothing — then
streams new notifications as they are recorded (PostgreSQL NOTIFY wakes it; a poll every
few seconds covers a lost wake-up). Event ids are the notifications' `seq`.
The web feed shows notifications at once, in quiet hours too: it pings nobody.
`GET /` is the page frontends copy: the token travels in the URL fragment, never to the server's logs.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path

import asyncpg
from aiohttp import web

from shared.auth import AuthenticationError, TokenVerifier
from shared.observability import get_logger
from services.notify.config import NotifyConfig
from services.notify.routing import NOTIFIED_CHANNEL

log = get_logger("wfh.notify.web")

PAGE = Path(__file__).with_name("page.html")
REPLAY_WITHOUT_ID = 50
KEEPALIVE_SECONDS = 15.0
POLL_SECONDS = 5.0

_ROWS = (
    "SELECT n.seq, n.notification_id, n.kind, n.category, n.urgent, n.title, n.body, n.created_at, "
    "n.source_event_type, r.read_at IS NOT NULL AS read FROM notifications n "
    "LEFT JOIN notification_reads r ON r.tenant = n.tenant AND r.notification_id = n.notification_id "
    "WHERE n.tenant = $1 AND n.recipient_id = $2 AND n.seq > $3 ORDER BY n.seq LIMIT 200"
)
_LATEST = "SELECT coalesce(min(seq) - 1, 0) FROM (SELECT seq FROM notifications " \
    "WHERE tenant = $1 AND recipient_id = $2 ORDER BY seq DESC LIMIT $3) latest"


class WebFeed:
    def __init__(self, config: NotifyConfig) -> None:
        self.config = config
        self.port: int | None = None
        self.ready = asyncio.Event()
        self._waiters: dict[tuple[str, str], set[asyncio.Event]] = defaultdict(set)
        self._pool: asyncpg.Pool | None = None
        self._verifier: TokenVerifier | None = None

    async def web_server(self, runtime) -> None:
        """Background loop of the service: serve until cancelled."""
        settings = runtime.settings
        self._pool = runtime.pool
        self._verifier = TokenVerifier(settings.jwt_public_key_pem, settings.jwt_issuer)
        listener = await asyncpg.connect(settings.database_url)
        await listener.add_listener(NOTIFIED_CHANNEL, self._wake)
        app = web.Application()
        app.add_routes([
            web.get("/", self._page),
            web.get("/notifications/stream", self._stream),
            web.get("/health", self._health),
        ])
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.config.http_host, self.config.http_port)
            await site.start()
            self.port = runner.addresses[0][1]
            self.ready.set()
            log.info("web feed listening", url=f"http://{self.config.http_host}:{self.port}/")
            await asyncio.Future()  # until cancelled
        finally:
            self.ready.clear()
            for waiters in self._waiters.values():
                for waiter in waiters:
                    waiter.set()
            await runner.cleanup()
            listener.terminate()

    def _wake(self, _conn, _pid, _channel, payload: str) -> None:
        tenant, _, person_id = payload.partition("\n")
        for waiter in self._waiters.get((tenant, person_id), ()):
            waiter.set()

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE.read_text(encoding="utf-8"), content_type="text/html",
                            charset="utf-8", headers={"Cache-Control": "no-store"})

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else request.query.get("access_token")
        try:
            identity = self._verifier.verify(token)
        except AuthenticationError as exc:
            return web.json_response(
                {"code": "unauthenticated", "message": "Không xác thực được người dùng (mã đăng nhập "
                 "thiếu, sai hoặc hết hạn).", "message_en": f"Not authenticated: {exc}."},
                status=401, headers={"WWW-Authenticate": 'Bearer realm="wfh"'}, dumps=_json,
            )
        last_seen = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
        key = (identity.tenant, identity.person_id)
        async with self._pool.acquire() as conn:
            after = int(last_seen) if last_seen and last_seen.isdigit() else await conn.fetchval(
                _LATEST, identity.tenant, identity.person_id, REPLAY_WITHOUT_ID)
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        })
        await response.prepare(request)
        await response.write(b"retry: 2000\n\n")
        waiter = asyncio.Event()
        self._waiters[key].add(waiter)
        try:
            while self.ready.is_set():
                waiter.clear()
                async with self._pool.acquire() as conn:
                    rows = await conn.fetch(_ROWS, identity.tenant, identity.person_id, after)
                for row in rows:
                    await response.write(_sse(row))
                    after = row["seq"]
                if len(rows) == 200:
                    continue
                try:
                    await asyncio.wait_for(waiter.wait(), POLL_SECONDS)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._waiters[key].discard(waiter)
            if not self._waiters[key]:
                del self._waiters[key]
        return response


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def _sse(row) -> bytes:
    data = {
        "id": row["seq"], "notification_id": str(row["notification_id"]), "kind": row["kind"],
        "category": row["category"], "urgent": row["urgent"], "title": row["title"],
        "body": row["body"], "created_at": row["created_at"].isoformat(), "read": row["read"],
    }
    return f"id: {row['seq']}\nevent: notification\ndata: {_json(data)}\n\n".encode()
