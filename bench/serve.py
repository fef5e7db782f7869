"""`python -m bench.serve <service>`: one service process of the benchmark, on a simulated clock.

`BENCH_CLOCK=<local ISO datetime>@<unix time>` makes the department's local time read as that
datetime at that instant and run on from there at real speed, so the working day (07:00 check-in
burst, sessions, quiet hours) happens whatever the hour and weekday of the run. The services'
own clock seams are used (`shared.localtime.local_now`, which `services.roster.clock` reads, and
notify's injected `NotifyConfig.clock`); events are still stamped with the real time.
Everything else is the service's ordinary entry point (`shared.runtime.run_forever`).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


def install_clock() -> Callable[[], datetime] | None:
    spec = os.environ.get("BENCH_CLOCK")
    if not spec:
        return None
    start_text, epoch_text = spec.split("@")
    start, epoch = datetime.fromisoformat(start_text), float(epoch_text)
    import shared.localtime as localtime

    def local_now() -> datetime:
        return start + timedelta(seconds=time.time() - epoch)

    localtime.local_now = local_now  # before any service module binds it
    return local_now


def main() -> None:
    service = sys.argv[1]
    clock = install_clock()
    from shared.runtime import ServiceRuntime, run_forever

    build = importlib.import_module(f"services.{service}.app").build
    if service == "notify" and clock is not None:
        from services.notify.app import NotifyService
        from services.notify.config import NotifyConfig

        config = dataclasses.replace(NotifyConfig.from_env(), clock=lambda: clock().astimezone(UTC))

        def build(settings):  # noqa: F811 - notify with the simulated clock injected
            return ServiceRuntime(NotifyService(config).definition(), settings)

    profile_dir = os.environ.get("BENCH_PROFILE")  # a directory: cProfile the process into it
    if not profile_dir:
        run_forever(build, service)
        return
    import cProfile

    profiler = cProfile.Profile(time.process_time)  # CPU time, not time waited
    profiler.enable()
    try:
        run_forever(build, service)
    finally:
        profiler.disable()
        profiler.dump_stats(os.path.join(profile_dir, f"{service}.prof"))


if __name__ == "__main__":
    main()
