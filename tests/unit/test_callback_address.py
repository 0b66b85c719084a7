"""The callback address rules (``pipeline.callback_address``), every kind and every spelling."""

from __future__ import annotations

import ipaddress

import pytest

from pipeline.callback_address import (
    CallbackPolicy,
    check_url,
    kind,
    literal_address,
    parse_networks,
)
from pipeline.errors import CallbackRefused


@pytest.mark.parametrize(("host", "address"), [
    ("127.0.0.1", "127.0.0.1"), ("2130706433", "127.0.0.1"), ("0x7f000001", "127.0.0.1"),
    ("0X7F000001", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"), ("017700000001", "127.0.0.1"),
    ("127.1", "127.0.0.1"), ("0x7f.1", "127.0.0.1"), ("127.0.0.1.", "127.0.0.1"),
    ("010.0.0.1", "8.0.0.1"), ("0x0a.0x00.0x00.0x05", "10.0.0.5"), ("0", "0.0.0.0"),
    ("[::1]", "::1"), ("::ffff:7f00:1", "::ffff:7f00:1"), ("[fe80::1%eth0]", "fe80::1%eth0"),
])
def test_every_spelling_of_an_address_is_read_as_the_resolver_reads_it(host: str,
                                                                       address: str) -> None:
    assert literal_address(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize("host", ["example.com", "cafe.be", "dead.beef", "127.0.0.1 x",
                                  "1.1.1.256", "hooks-10.0.0.5.example"])
def test_names_are_not_addresses(host: str) -> None:
    assert literal_address(host) is None


@pytest.mark.parametrize(("address", "expected"), [
    ("127.0.0.1", "loopback"), ("127.255.255.254", "loopback"), ("::1", "loopback"),
    ("0.0.0.0", "unspecified"), ("0.1.2.3", "unspecified"), ("::", "unspecified"),
    ("169.254.169.254", "link_local"), ("fe80::1", "link_local"), ("fe80::1%eth0", "link_local"),
    ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"), ("ff02::1", "multicast"),
    ("fd00::1", "unique_local"), ("fc00::1", "unique_local"), ("fec0::1", "unique_local"),
    ("10.0.0.5", "private"), ("172.16.0.1", "private"), ("172.31.255.255", "private"),
    ("192.168.1.1", "private"), ("192.0.2.1", "private"), ("198.18.0.1", "private"),
    ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"), ("100.64.0.1", "not_global"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "link_local"),
    ("::ffff:10.0.0.5", "private"), ("2002:7f00:1::", "loopback"), ("2002:a00:5::", "private"),
    ("64:ff9b::a9fe:a9fe", "link_local"), ("64:ff9b::7f00:1", "loopback"),
    ("2001:db8::1", "private"),
])
def test_addresses_inside_the_network_are_refused_by_kind(address: str,
                                                          expected: str) -> None:
    assert kind(ipaddress.ip_address(address)) == expected


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:2800:21f:cb07::1",
                                     "::ffff:93.184.215.14", "64:ff9b::808:808"])
def test_public_addresses_pass(address: str) -> None:
    assert kind(ipaddress.ip_address(address)) is None


def test_a_name_passes_only_when_every_address_it_resolves_to_does() -> None:
    policy = CallbackPolicy()
    assert check_url("https://a.example/x", policy, lambda h, p: ["8.8.8.8"]) == [
        ipaddress.ip_address("8.8.8.8")]
    with pytest.raises(CallbackRefused) as refused:
        check_url("https://a.example/x", policy, lambda h, p: ["8.8.8.8", "10.0.0.1"])
    assert refused.value.why == "private" and "a.example (10.0.0.1)" in str(refused.value)
    assert check_url("https://a.example/x", policy) == []  # names wait for delivery
    with pytest.raises(OSError):
        check_url("https://a.example/x", policy, lambda h, p: [])


@pytest.mark.parametrize("url", ["https://localhost/", "https://LOCALHOST./x",
                                 "https://db.localhost:5432/"])
def test_localhost_names_are_loopback_without_asking_dns(url: str) -> None:
    with pytest.raises(CallbackRefused) as refused:
        check_url(url, CallbackPolicy(), lambda h, p: ["8.8.8.8"])
    assert refused.value.why == "loopback"


def test_the_development_allowlist_lets_its_networks_through_and_nothing_else() -> None:
    policy = CallbackPolicy(allow_http=True, allow_networks=parse_networks("127.0.0.1/32, ::1"))
    assert check_url("http://127.0.0.1:9/x", policy)
    assert check_url("http://[::1]:9/x", policy)
    for url in ("http://127.0.0.2/", "http://10.0.0.1/", "http://169.254.169.254/"):
        with pytest.raises(CallbackRefused):
            check_url(url, policy)


@pytest.mark.parametrize(("url", "why"), [
    ("http://8.8.8.8/", "insecure"), ("ftp://8.8.8.8/", "invalid_url"),
    ("https:///x", "invalid_url"), ("https://8.8.8.8:99999/", "invalid_url"),
])
def test_urls_that_are_not_https_to_a_host_are_refused(url: str, why: str) -> None:
    with pytest.raises(CallbackRefused) as refused:
        check_url(url, CallbackPolicy())
    assert refused.value.why == why


def test_a_bad_development_network_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300/8'"):
        parse_networks("127.0.0.1/32,10.0.0.300/8")
