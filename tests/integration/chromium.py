"""Headless Chromium driven over the DevTools protocol (aiohttp's websocket client): open a
page, read what it shows. `.ci/run` installs Debian's chromium; tests skip only without it."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import tempfile
import time
from pathlib import Path

import aiohttp

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


class Browser:
    def __init__(self) -> None:
        self._ids = itertools.count(1)

    async def __aenter__(self) -> Browser:
        self._profile = tempfile.mkdtemp(prefix="wfh-chromium-")
        self._process = await asyncio.create_subprocess_exec(
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
            f"--user-data-dir={self._profile}", "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 15
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self._process.returncode is not None:
                raise RuntimeError("chromium did not open its DevTools port")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"http://127.0.0.1:{port}/json/list") as response:
            page = next(t for t in await response.json() if t["type"] == "page")
        self._ws = await self._session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        return self

    async def call(self, method: str, **params) -> dict:
        call_id = next(self._ids)
        await self._ws.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = json.loads((await asyncio.wait_for(self._ws.receive(), 10)).data)
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def text(self) -> str:
        return await self.evaluate("document.body ? document.body.innerText : ''") or ""

    async def wait_for_text(self, *wanted: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = await self.text()
            if all(w in text for w in wanted):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"the page never showed {wanted!r}; it shows:\n{text}")
            await asyncio.sleep(0.1)

    async def __aexit__(self, *exc) -> None:
        await self._ws.close()
        await self._session.close()
        self._process.terminate()
        try:
            await asyncio.wait_for(self._process.wait(), 5)
        except TimeoutError:
            self._process.kill()
            await self._process.wait()
        shutil.rmtree(self._profile, ignore_errors=True)
