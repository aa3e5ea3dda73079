#!/usr/bin/env python
"""Django's command-line utility.

`runproxy` is a gevent daemon: monkey-patching must happen before Django (or anything
that touches sockets, threads or ssl) is imported, so it is done here, first.
"""

from __future__ import annotations

import os
import sys

GEVENT_COMMANDS = frozenset({"runproxy"})


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in GEVENT_COMMANDS:
        # Late on purpose: gevent must patch before anything imports sockets or threads.
        from gevent import monkey  # noqa: PLC0415

        monkey.patch_all()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "goproxy_site.settings.local")
    # After the patch above, for the same reason.
    from django.core.management import execute_from_command_line  # noqa: PLC0415

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
