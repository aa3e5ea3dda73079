"""Destination policy: refused address ranges, CONNECT ports, descriptor exhaustion, and
the production policy on the real daemon."""

from __future__ import annotations

import pytest

from goproxy_site.tests.support.proxy import E2E, RawClient, basic, descriptors_used_up, proxied_get
from proxy_daemon.errors import Forbidden, ServiceUnavailable
from proxy_daemon.policy import DestinationPolicy, address_refusal, connect


class PolicyTests:
    @pytest.mark.parametrize(
        "address",
        [
            "127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "192.168.0.1", "169.254.169.254",
            "100.64.0.1", "100.127.255.254", "224.0.0.1", "239.1.2.3", "0.0.0.0", "0.1.2.3",
            "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1",
            "::ffff:10.0.0.1", "::ffff:127.0.0.1", "64:ff9b::a00:1", "2002:c0a8:0101::1",
        ],
    )  # fmt: skip
    def test_private_and_special_addresses_are_refused(self, address: str) -> None:
        assert address_refusal(address) is not None

    @pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
    def test_public_addresses_are_allowed(self, address: str) -> None:
        assert address_refusal(address) is None

    def test_mixed_resolution_keeps_only_public_addresses(self) -> None:
        policy = DestinationPolicy(allow_private=False, connect_ports=frozenset({443}))
        assert policy.allowed_addresses("h", ["127.0.0.1", "8.8.8.8"]) == ["8.8.8.8"]
        with pytest.raises(Forbidden, match="loopback"):
            policy.allowed_addresses("rebind.example", ["127.0.0.1"])

    def test_out_of_descriptors_is_a_503_not_an_internal_error(self) -> None:
        """At the fd limit (10k tunnels hold 20k fds) opening the upstream socket fails:
        the client is told so with a 503, the connection is not dropped with a 500."""
        policy = DestinationPolicy(allow_private=True, connect_ports=frozenset({443}))
        with descriptors_used_up():
            with pytest.raises(ServiceUnavailable, match="cannot open a connection") as caught:
                connect(policy, "127.0.0.1", 9, timeout=1.0)
        assert caught.value.status == 503

    def test_connect_ports(self) -> None:
        policy = DestinationPolicy(allow_private=True, connect_ports=frozenset({443, 8443}))
        policy.check_connect_port(443)
        with pytest.raises(Forbidden, match=r"port 22 is not allowed \(allowed: 443, 8443\)"):
            policy.check_connect_port(22)


@E2E
class ProductionPolicyTests:
    def test_private_destinations_refused_with_reason(
        self, strict_proxy, proxy_users, origin
    ) -> None:
        u = proxy_users["px-alice"]
        for url, reason in [
            (origin.url("/hello"), b"loopback"),
            ("http://localhost:9/", b"loopback"),
            ("http://10.0.0.1/", b"private"),
            ("http://169.254.169.254/latest/meta-data/", b"link-local"),
            ("http://[::1]:80/", b"loopback"),
            ("http://100.64.0.1/", b"CGNAT"),
        ]:
            r = proxied_get(strict_proxy, u, url).response()
            assert r.status == 403, url
            assert reason in r.body, (url, r.body)
        c = RawClient(strict_proxy.port)
        auth = basic(*u.auth)
        c.send(f"CONNECT 127.0.0.1:443 HTTP/1.1\r\nProxy-Authorization: {auth}\r\n\r\n".encode())
        r = c.response()
        assert r.status == 403 and b"loopback" in r.body
