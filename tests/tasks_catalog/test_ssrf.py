"""The SSRF guard's address policy (pure: nothing is resolved or connected to)."""
from __future__ import annotations

import ipaddress
import re

import pytest

from tasks_catalog.ssrf import DestinationRefused, check_address, checked_destination

NONE_ALLOWED: tuple = ()


@pytest.mark.parametrize("address, reason", [
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("100.64.0.1", "shared address space (CGNAT)"),
    ("100.127.255.254", "shared address space (CGNAT)"),
    ("224.0.0.1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("198.18.0.1", "private"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link-local"),
    ("fc00::1", "private"),
    ("ff02::1", "multicast"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::127.0.0.1", "loopback"),          # IPv4-compatible
    ("2002:7f00:1::1", "loopback"),      # 6to4 of 127.0.0.1
    ("64:ff9b::a00:1", "private"),       # NAT64 of 10.0.0.1
])
def test_refused_addresses(address, reason):
    with pytest.raises(DestinationRefused, match=re.escape(f"{reason} address")):
        check_address(ipaddress.ip_address(address), NONE_ALLOWED)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address):
    assert check_address(ipaddress.ip_address(address), NONE_ALLOWED) is None


def test_an_allowed_network_lets_its_addresses_through():
    allowed = (ipaddress.ip_network("10.20.0.0/16"),)
    assert check_address(ipaddress.ip_address("10.20.3.4"), allowed) is None
    assert check_address(ipaddress.ip_address("::ffff:10.20.3.4"), allowed) is None
    with pytest.raises(DestinationRefused):
        check_address(ipaddress.ip_address("10.21.0.1"), allowed)


@pytest.mark.parametrize("url, message", [
    ("ftp://example.com/", "refused URL scheme 'ftp'"),
    ("file:///etc/passwd", "refused URL scheme 'file'"),
    ("example.com/path", "refused URL scheme '(none)'"),
    ("http:///path", "no host"),
    ("http://example.com:99999/", "invalid URL"),
])
def test_malformed_or_foreign_urls_are_refused(url, message):
    with pytest.raises(DestinationRefused, match=re.escape(message)):
        checked_destination(url)
