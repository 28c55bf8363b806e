"""The admin surface under ``/__objectd/`` (L3): who may reach it, and what is on it.

objectd's own pages and endpoints (the inspector, metrics) live under :data:`ADMIN_PREFIX`.
Who may reach them:

* ``objectd dev``: requests from this machine only: the peer (``scope["client"]``) must
  be a loopback address, so that ``dev --host 0.0.0.0`` does not open the data to the
  network (a Host header is whatever the sender writes), and the Host must be a
  loopback name (``localhost``, 127.0.0.0/8, ``::1``), so that a web page whose own
  name resolves to 127.0.0.1 (DNS rebinding) cannot read them from the user's browser;
  anything else gets 403 and must use ``--admin-token``.  A request a browser marks as
  sent by another site's page (``Sec-Fetch-Site`` other than ``same-origin``/``none``, or
  an ``Origin`` that is not loopback) is 403 too: such a page cannot read the answer, but
  could still make the inspector run its queries.  With ``--admin-token`` set,
  only with the token, as in production.
* ``objectd serve``: only with ``--admin-token TOKEN`` (or ``OBJECTD_ADMIN_TOKEN``), and
  then every admin request must carry it, as ``Authorization: Bearer TOKEN`` or in the
  :data:`TOKEN_COOKIE` cookie (for a browser); anything else is 401.  Without a token the
  surface does not exist: ``/__objectd/…`` reaches the Worker like any other path.

A browser cannot send a header from a link, so :data:`LOGIN_PATH` is open to all: the
inspector's handler there (:meth:`AdminRoutes.set_login`) shows a form and sets the
cookie when :meth:`AdminRoutes.token_matches`; any other page asked for by a browser
without the token is redirected to it.  The token is compared in constant time.  Each
feature registers its handler for a path (:meth:`AdminRoutes.add`); the longest
registered prefix answers, and an admin path no feature serves is 404.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["ADMIN_PREFIX", "LOGIN_PATH", "TOKEN_COOKIE", "AdminHandler", "AdminRoutes"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ADMIN_PREFIX = "/__objectd/"
TOKEN_COOKIE = "objectd_admin"
LOGIN_PATH = ADMIN_PREFIX + "login"
AdminHandler = Callable[[Scope, Receive, Send], Awaitable[None]]

_PLAIN = [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store")]


class AdminRoutes:
    """The handlers under :data:`ADMIN_PREFIX`, behind the access rule above."""

    def __init__(self, *, token: str | None = None, open_without_token: bool = False) -> None:
        if token is not None and not token:
            raise ValueError("the admin token must not be empty")
        self._token = token.encode() if token is not None else None
        self._open = open_without_token and token is None
        self._routes: list[tuple[str, AdminHandler]] = []
        self._login: AdminHandler | None = None

    @property
    def enabled(self) -> bool:
        return self._open or self._token is not None

    def add(self, path: str, handler: AdminHandler) -> None:
        """Serve ``path`` and everything under it (``/__objectd/metrics``, ``/__objectd/``)."""
        if not path.startswith(ADMIN_PREFIX.rstrip("/")):
            raise ValueError(f"admin path {path!r} is not under {ADMIN_PREFIX}")
        self._routes.append((path, handler))
        self._routes.sort(key=lambda route: len(route[0]), reverse=True)

    def set_login(self, handler: AdminHandler) -> None:
        """Serve :data:`LOGIN_PATH` with ``handler``, to anyone (it checks the token itself)."""
        self._login = handler

    def token_matches(self, given: str) -> bool:
        """Whether ``given`` is the admin token (constant time); False without a token."""
        if self._token is None:
            return False
        return hmac.compare_digest(given.encode("utf-8", "replace"), self._token)

    def handles(self, scope: Scope) -> bool:
        """Whether this HTTP request is the admin surface's (and not the Worker's)."""
        if not self.enabled or scope["type"] != "http":
            return False
        path: str = scope["path"]
        return path.startswith(ADMIN_PREFIX) or path == ADMIN_PREFIX.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._open and not (_loopback_client(scope) and _loopback_host(scope)):
            await _plain(
                send,
                403,
                b"objectd admin: without --admin-token these pages answer only to this "
                b"machine (a loopback client, and a loopback Host: localhost, 127.0.0.1, "
                b"[::1]); start objectd dev with --admin-token to reach them from elsewhere\n",
            )
            return
        if self._open and _from_another_site(scope):
            await _plain(
                send,
                403,
                b"objectd admin: this request comes from another site's page (Sec-Fetch-Site "
                b"or Origin); without --admin-token only this machine's own pages and "
                b"clients may ask\n",
            )
            return
        if scope["path"] == LOGIN_PATH and self._login is not None:
            await self._login(scope, receive, send)
            return
        if not self.allowed(scope):
            if self._login is not None and _wants_html(scope):
                location = LOGIN_PATH.encode()
                await _plain(send, 303, b"objectd admin: sign in\n", [(b"location", location)])
                return
            await _plain(
                send,
                401,
                b"objectd admin: this needs the admin token (Authorization: Bearer TOKEN)\n",
                [(b"www-authenticate", b'Bearer realm="objectd"')],
            )
            return
        path: str = scope["path"]
        for prefix, handler in self._routes:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                await handler(scope, receive, send)
                return
        await _plain(send, 404, f"objectd admin: nothing at {path}\n".encode())

    def allowed(self, scope: Scope) -> bool:
        if self._open:
            return True
        if self._token is None:
            return False
        given = _token_of(scope)
        return given is not None and hmac.compare_digest(given, self._token)


def _loopback_client(scope: Scope) -> bool:
    """Whether the request comes from this machine (its peer is a loopback address)."""
    client = scope.get("client")
    if not client:
        return False
    try:
        address = ipaddress.ip_address(str(client[0]).partition("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _from_another_site(scope: Scope) -> bool:
    """Whether a browser says the request comes from a page of another site: its
    Sec-Fetch-Site is neither ``same-origin`` nor ``none``, or its Origin is not loopback."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"sec-fetch-site" and value.strip().lower() not in (b"same-origin", b"none"):
            return True
        if name == b"origin":
            origin = value.decode("latin-1").strip()
            scheme, sep, rest = origin.partition("://")
            if not sep or scheme.lower() not in ("http", "https") or not _loopback_name(rest):
                return True
    return False


def _loopback_host(scope: Scope) -> bool:
    """Whether the request's Host names this machine's loopback (any port)."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    host = next((value for name, value in headers if name == b"host"), b"").decode("latin-1")
    return _loopback_name(host)


def _loopback_name(host: str) -> bool:
    """Whether ``host`` (``name[:port]``, ``[v6][:port]``) is a loopback name."""
    if host.startswith("["):
        name = host[1 : host.find("]")] if "]" in host else ""
    else:
        name = host.rpartition(":")[0] if ":" in host else host
    name = name.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _token_of(scope: Scope) -> bytes | None:
    """The token a request carries: its bearer credentials, else the admin cookie."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            if scheme.lower() == b"bearer":
                return credentials.strip()
    # Split by hand (RFC 6265 §5.2): SimpleCookie drops the whole header at the first
    # cookie it cannot parse, and other code served on localhost sets what it likes.
    wanted = TOKEN_COOKIE.encode()
    for name, value in headers:
        if name == b"cookie":
            for pair in value.split(b";"):
                key, sep, given = pair.partition(b"=")
                if sep and key.strip() == wanted:
                    given = given.strip()
                    if len(given) >= 2 and given[:1] == given[-1:] == b'"':
                        given = given[1:-1]
                    return given
    return None


def _wants_html(scope: Scope) -> bool:
    """A browser's page request (GET, Accept naming HTML), not an API client's."""
    if scope.get("method", "GET") != "GET":
        return False
    return any(name == b"accept" and b"text/html" in value for name, value in scope["headers"])


async def _plain(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [*_PLAIN, *(extra or []), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
