"""The Host check (issue 9 §6): a valid host[:port] per RFC 3986, nothing that could
change the URL the worker sees."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from objectd.asgi import host
from objectd.asgi.host import check_host

VALID = [
    b"localhost",
    b"example.com",
    b"example.com.",
    b"EXAMPLE.com:8787",
    b"xn--bcher-kva.example",
    b"under_score~tilde",
    b"a%41b",
    b"!$&'()*+,;=",
    b"127.0.0.1",
    b"127.0.0.1:0",
    b"999.999.999.999",  # not an IPv4 address, but a valid reg-name
    b"h:65535",
    b"[::1]",
    b"[::1]:80",
    b"[2001:db8::8:800:200c:417a]:443",
    b"[::ffff:192.0.2.1]",
    b"[v1.fe80::a+en1]",
]

INVALID = [
    b"",
    b":80",
    b"x/counter/victim/increment?",
    b"x?y",
    b"x#y",
    b"user@x",
    b"user:pass@x",
    b"a b",
    b"a\tb",
    b"x\\y",
    b"x%4",
    b"x%zz",
    b"h:",
    b"h:99999",
    b"h:123456",
    b"h:8a",
    b"h:-1",
    b"h:80:81",
    b"[::1",
    b"::1",
    b"[::1]x",
    b"[::1]:",
    b"[::1]:99999",
    b"[zz::1]",
    b"[1.2.3.4]",
    b"[fe80::1%eth0]",
    b"[fe80::1%25eth0]",
    b"[v1.]",
    b"[]",
    "bücher.example".encode(),
    b"a, b",  # two Host headers joined
]


@pytest.mark.parametrize("value", VALID)
def test_valid_hosts_are_kept_and_are_the_url_host(value: bytes) -> None:
    host = check_host(value)
    assert host == value.decode()
    parts = urlsplit(f"http://{host}/health?q=1")
    assert (parts.netloc, parts.path, parts.query) == (host, "/health", "q=1")


@pytest.mark.parametrize("value", INVALID)
def test_invalid_hosts_are_refused(value: bytes) -> None:
    with pytest.raises(ValueError, match="invalid Host header"):
        check_host(value)


def test_a_refused_value_stays_refused_and_the_memo_is_bounded() -> None:
    for i in range(3000):
        check_host(b"host%d" % i)
    for _ in range(2):
        with pytest.raises(ValueError, match="invalid Host header"):
            check_host(b"x/y")
    assert len(host._checked) <= host._MEMO_LIMIT
