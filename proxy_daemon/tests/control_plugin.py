"""A ControlPlugin for tests: a line protocol on a loopback port drives the ProxyControl.

Commands: `restrict <uid> <reason...>`, `lift <uid>`, `restricted`, `invalidate <uid>`,
`refresh <uid>`, `throttle <uid> <B/s or none>`. Each answers one JSON line. The port
comes from PROXY_TEST_CONTROL_PORT.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from gevent.server import StreamServer

from proxy_daemon.hooks import ProxyControl


class LineControlPlugin:
    def __init__(self, control: ProxyControl) -> None:
        self.control = control
        self.server: StreamServer | None = None
        self.loaded = True  # no start-up state to load
        self.streaming = False
        self.applied = 0

    def start(self) -> None:
        port = int(os.environ["PROXY_TEST_CONTROL_PORT"])
        self.server = StreamServer(("127.0.0.1", port), self._handle)
        self.server.start()
        self.streaming = True

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(timeout=1)

    def _handle(self, sock: socket.socket, _addr: Any) -> None:
        f = sock.makefile("rwb")
        for raw in f:
            parts = raw.decode().strip().split(" ", 2)
            cmd, args = parts[0], parts[1:]
            result: Any = "ok"
            if cmd == "restrict":
                self.control.restrict(int(args[0]), args[1] if len(args) > 1 else "")
            elif cmd == "lift":
                self.control.lift(int(args[0]))
            elif cmd == "restricted":
                result = {str(k): v for k, v in self.control.restricted().items()}
            elif cmd == "invalidate":
                self.control.invalidate_credentials(user_id=int(args[0]))
            elif cmd == "refresh":
                self.control.refresh_user_limits(int(args[0]))
            elif cmd == "throttle":
                speed = None if args[1] == "none" else int(args[1])
                self.control.throttle(int(args[0]), speed)
            else:
                result = f"unknown command {cmd!r}"
            if result == "ok":
                self.applied += 1
            f.write((json.dumps(result) + "\n").encode())
            f.flush()


def control_call(port: int, line: str) -> Any:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(line.encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return json.loads(data)
