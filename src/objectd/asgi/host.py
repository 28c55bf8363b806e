"""The Host header: a valid ``host[:port]`` authority, or the request is refused.

The URL a worker sees is ``scheme://{Host}{path}``, so a Host value that is not a plain
authority would let a client rewrite the path, the query or the host a proxy's rules
matched (issue 9 §6: ``Host: x/counter/victim/increment?`` sent to ``/health`` reached the
victim).  RFC 9112 §3.2 requires a 400 for an invalid Host; valid means RFC 3986 §3.2.2/3:

    host        = IP-literal / IPv4address / reg-name
    IP-literal  = "[" ( IPv6address / IPvFuture ) "]"
    reg-name    = *( unreserved / pct-encoded / sub-delims )     (non-empty here)
    port        = *DIGIT                                          (1-5 digits, <= 65535 here)

A dotted IPv4 address is also a reg-name, so the reg-name rule covers it.  None of the
allowed characters is one of ``/ ? # @ [ ] :`` (outside a bracketed literal), so the host
of the URL built from a checked value is exactly that value.  IPv6 zone identifiers
(RFC 6874) and an empty port are refused: no client sends them.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["check_host"]

_REG_NAME = re.compile(rb"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+")
_IPV_FUTURE = re.compile(rb"v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+")
_PORT = re.compile(rb"[0-9]{1,5}")

# Values already checked: a server sees the same few Host values over and over, and a
# dict lookup costs far less than the regexes.  Bounded (cleared when full), so varied
# input cannot grow it.
_MEMO_LIMIT = 1024
_checked: dict[bytes, str] = {}


def check_host(value: bytes) -> str:
    """``value`` (a raw Host header) as text if it is a valid ``host[:port]``.

    Raises ``ValueError`` naming the value otherwise.
    """
    checked = _checked.get(value)
    if checked is not None:
        return checked
    if not _valid(value):
        raise ValueError(f"invalid Host header {value!r}: expected host[:port] (RFC 3986)")
    checked = value.decode("ascii")
    if len(_checked) >= _MEMO_LIMIT:
        _checked.clear()
    _checked[value] = checked
    return checked


def _valid(value: bytes) -> bool:
    if value.startswith(b"["):
        literal, bracket, rest = value[1:].partition(b"]")
        if not bracket or not _ip_literal(literal):
            return False
        if not rest:
            return True
        return rest.startswith(b":") and _port(rest[1:])
    host, colon, port = value.partition(b":")
    if colon and not _port(port):
        return False
    return _REG_NAME.fullmatch(host) is not None


def _ip_literal(literal: bytes) -> bool:
    if literal[:1] in (b"v", b"V"):
        return _IPV_FUTURE.fullmatch(literal) is not None
    if b"%" in literal:  # a zone identifier: not in RFC 3986's grammar
        return False
    try:
        ipaddress.IPv6Address(literal.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return False
    return True


def _port(port: bytes) -> bool:
    return _PORT.fullmatch(port) is not None and int(port) <= 65535
