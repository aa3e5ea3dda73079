"""Upload sink for `make bench`: reads each request body completely, then answers 200.

nginx's `return 200` answers before the body arrives, and some proxies then stop relaying
the upload; this origin makes every target carry all the bytes. Usage: sink.py PORT
"""

from __future__ import annotations

import socket
import socketserver
import sys


class Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        buf = bytearray(1 << 20)
        data = b""
        for _ in range(10_000):  # keep-alive requests on one connection, bounded
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                data += chunk
                if len(data) > 65536:
                    return
            head, _, data = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            remaining = length - len(data)
            data = b""
            while remaining > 0:
                n = sock.recv_into(buf, min(len(buf), remaining))
                if not n:
                    return
                remaining -= n
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    with Server(("127.0.0.1", int(sys.argv[1])), Handler) as server:
        server.serve_forever()
