"""Open N idle CONNECT tunnels through the proxy and report its RSS per tunnel.

Usage: idle_tunnels.py PROXY_PORT PROXY_PID TARGET_PORT LOGIN SECRET [N]
"""

from __future__ import annotations

import base64
import socket
import sys
import time


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main() -> None:
    port, pid, target = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    login, secret = sys.argv[4], sys.argv[5]
    n = int(sys.argv[6]) if len(sys.argv) > 6 else 1000
    auth = base64.b64encode(f"{login}:{secret}".encode()).decode()
    request = (
        f"CONNECT 127.0.0.1:{target} HTTP/1.1\r\nProxy-Authorization: Basic {auth}\r\n\r\n"
    ).encode()
    time.sleep(0.5)
    before = rss_kib(pid)
    socks = []
    started = time.monotonic()
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(request)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = s.recv(4096)
            if not chunk:
                raise SystemExit(f"proxy closed a tunnel: {reply!r}")
            reply += chunk
        if not reply.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"CONNECT refused: {reply!r}")
        socks.append(s)
    opened = time.monotonic() - started
    time.sleep(1.0)
    after = rss_kib(pid)
    # The first tunnel still works after all the others were opened.
    socks[0].sendall(b"GET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := socks[0].recv(65536):
        data += chunk
    ok = data.startswith(b"HTTP/1.1 200")
    for s in socks:
        s.close()
    per = (after - before) / n
    print(
        f"idle tunnels: {n} opened in {opened:.1f} s; proxy RSS {before / 1024:.1f} -> "
        f"{after / 1024:.1f} MiB = {per:.1f} KiB per idle tunnel; first tunnel still works: {ok}"
    )


if __name__ == "__main__":
    main()
