"""`make run`'s supervisor: a service that stops while the others are being stopped (Ctrl-C
reaches every process of the terminal's group) is not a crash to restart."""

import asyncio
import sys

from ops.supervisor import Supervised, stop_all


async def _running(name: str, script: str) -> Supervised:
    service = Supervised(name, {})
    service.process = await asyncio.create_subprocess_exec(sys.executable, "-c", script)
    return service


async def test_a_service_exiting_while_others_stop_is_not_restarted(capsys):
    # The first takes a while to stop; the second would exit on its own while it does, as a
    # service does on the Ctrl-C it got itself.
    slow = await _running("slow", "import signal, time\n"
                                  "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(0.6), exit(0)))\n"
                                  "time.sleep(30)")
    quick = await _running("quick", "import time; time.sleep(0.3)")
    await asyncio.sleep(0.1)  # both running
    watchers = [asyncio.create_task(s.watch()) for s in (slow, quick)]
    await stop_all([slow, quick])
    await asyncio.wait_for(asyncio.gather(*watchers), 5)
    assert slow.process.returncode is not None and quick.process.returncode is not None
    assert slow.restarts == quick.restarts == 0
    assert "restarting" not in capsys.readouterr().out
