"""Run the plan-controller loop in the foreground (the worker bootstep's loop, for debugging)."""

from __future__ import annotations

import signal
import time
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from plans.consumer import Stopped, plan_controller_build


class Command(BaseCommand):
    help = "Consume traffic events into the plans DB and relay the outbox, until SIGTERM/SIGINT."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--max-seconds",
            type=float,
            default=0.0,
            help="Stop after this many seconds (0 = run until signalled).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.shutdown = False
        deadline = time.monotonic() + options["max_seconds"] if options["max_seconds"] else None

        def stop(signum: int, frame: FrameType | None) -> None:
            self.shutdown = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

        def should_stop() -> bool:
            return self.shutdown or (deadline is not None and time.monotonic() > deadline)

        try:
            controller = plan_controller_build(should_stop=should_stop)
        except Stopped:
            self.stdout.write("stopped before the broker was reachable")
            return
        self.stdout.write("plan-controller consuming; SIGTERM to stop")
        controller.run()
        self.stdout.write(
            f"stopped: {controller.applied} deltas applied, "
            f"{controller.dead_lettered} dead-lettered"
        )
