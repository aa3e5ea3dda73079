"""upstream: the pool of keep-alive connections to origins."""

from __future__ import annotations

import os
import socket

import pytest

from goproxy_site.tests.support.proxy import descriptors_used_up
from proxy_daemon.errors import ServiceUnavailable
from proxy_daemon.policy import DestinationPolicy
from proxy_daemon.upstream import UpstreamPool


class UpstreamPoolTests:
    def test_at_the_descriptor_limit_idle_pooled_connections_go_first(self) -> None:
        """Idle keep-alive connections to origins are the cheapest descriptors to give up:
        a new connection (or an accept) that hits RLIMIT_NOFILE closes them and retries."""
        origin = socket.socket()
        origin.bind(("127.0.0.1", 0))
        origin.listen(16)
        port = origin.getsockname()[1]
        policy = DestinationPolicy(allow_private=True, connect_ports=frozenset())
        pool = UpstreamPool(policy, per_host=4, idle_timeout=30.0, connect_timeout=2.0)
        pool.release(pool.acquire("127.0.0.1", port))  # one idle pooled connection
        try:
            with descriptors_used_up() as held:
                fresh = pool.acquire("127.0.0.1", port, fresh=True)
                assert pool.close_all() == 0  # the idle one was closed to make room
                fresh.close()
                with pytest.raises(ServiceUnavailable, match="cannot open a connection"):
                    held.append(os.open(os.devnull, os.O_RDONLY))  # the freed slot, taken
                    pool.acquire("127.0.0.1", port, fresh=True)  # nothing left to give up
        finally:
            pool.close_all()
            origin.close()
