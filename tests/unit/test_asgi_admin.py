"""Who reaches /__objectd/ (asgi/admin.py, issue 14): dev is open, serve only with the token."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from objectd.asgi.admin import AdminRoutes

Message = dict[str, Any]
TOKEN = "s3cret-admin-token-0123"


def _scope(
    path: str, *headers: tuple[bytes, bytes], client: tuple[str, int] | None = ("127.0.0.1", 50123)
) -> Message:
    if not any(name == b"host" for name, _ in headers):  # as a browser on this machine sends
        headers = ((b"host", b"127.0.0.1:8787"), *headers)
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "headers": list(headers),
        "client": client,
    }


def _call(routes: AdminRoutes, scope: Message) -> tuple[int, bytes]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(routes(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def _routes(**options: Any) -> AdminRoutes:
    routes = AdminRoutes(**options)

    async def metrics(scope: Message, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"metrics " + scope["path"].encode()})

    async def pages(scope: Message, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"pages"})

    routes.add("/__objectd/", pages)
    routes.add("/__objectd/metrics", metrics)
    return routes


def test_without_a_token_serve_has_no_admin_surface() -> None:
    routes = _routes()
    assert not routes.enabled
    assert not routes.handles(_scope("/__objectd/metrics"))  # the Worker's path, then


def test_dev_is_open_without_a_token() -> None:
    routes = _routes(open_without_token=True)
    assert routes.handles(_scope("/__objectd/metrics"))
    assert _call(routes, _scope("/__objectd/metrics")) == (200, b"metrics /__objectd/metrics")


@pytest.mark.parametrize("open_without_token", [False, True])
def test_with_a_token_every_request_must_carry_it(open_without_token: bool) -> None:
    routes = _routes(token=TOKEN, open_without_token=open_without_token)
    assert _call(routes, _scope("/__objectd/metrics"))[0] == 401
    wrong = (b"authorization", b"Bearer " + TOKEN[:-1].encode())
    assert _call(routes, _scope("/__objectd/metrics", wrong))[0] == 401
    right = (b"authorization", b"Bearer " + TOKEN.encode())
    assert _call(routes, _scope("/__objectd/metrics", right))[0] == 200
    cookie = (b"cookie", b"theme=dark; objectd_admin=" + TOKEN.encode())
    assert _call(routes, _scope("/__objectd/", cookie)) == (200, b"pages")


def test_the_longest_prefix_answers_and_unknown_paths_are_404() -> None:
    routes = _routes(open_without_token=True)
    deeper = _call(routes, _scope("/__objectd/metrics/extra"))
    assert deeper[1] == b"metrics /__objectd/metrics/extra"
    assert _call(routes, _scope("/__objectd/objects"))[1] == b"pages"
    bare = AdminRoutes(open_without_token=True)
    assert _call(bare, _scope("/__objectd/metrics"))[0] == 404
    assert not routes.handles(_scope("/__objectdx"))
    assert not routes.handles({"type": "websocket", "path": "/__objectd/", "headers": []})


def test_refused_setups() -> None:
    with pytest.raises(ValueError, match="empty"):
        AdminRoutes(token="")
    with pytest.raises(ValueError, match="not under"):
        AdminRoutes().add("/metrics", _routes().__call__)


def test_a_browser_without_the_token_is_sent_to_the_sign_in_form() -> None:
    """issue 14 §2: a browser cannot send a Bearer header, so it gets the form, which sets
    the cookie only for the right token; an API client still gets 401."""
    routes = _routes(token=TOKEN)
    seen: list[str] = []

    async def login(scope: Message, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        ok = routes.token_matches(TOKEN) and not routes.token_matches("nope")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"form %d" % ok})

    routes.set_login(login)
    html = (b"accept", b"text/html,application/xhtml+xml")
    status, _ = _call(routes, _scope("/__objectd/", html))
    assert status == 303
    assert _call(routes, _scope("/__objectd/api/summary"))[0] == 401
    assert _call(routes, _scope("/__objectd/login")) == (200, b"form 1")  # open to all
    assert seen == ["/__objectd/login"]


def test_without_a_token_nothing_matches_it() -> None:
    assert not _routes(open_without_token=True).token_matches("")


@pytest.mark.parametrize(
    ("host", "status"),
    [
        (b"localhost:8787", 200),
        (b"127.0.0.1:8787", 200),
        (b"127.1.2.3", 200),
        (b"[::1]:8787", 200),
        (b"app.localhost", 200),
        (b"attacker.example:8787", 403),  # DNS rebinding: a name that resolves to 127.0.0.1
        (b"192.168.1.20:8787", 403),
        (b"", 403),
    ],
)
def test_dev_without_a_token_answers_only_a_loopback_host(host: bytes, status: int) -> None:
    routes = _routes(open_without_token=True)
    assert _call(routes, _scope("/__objectd/metrics", (b"host", host)))[0] == status


def test_with_a_token_any_host_may_ask() -> None:
    routes = _routes(token=TOKEN, open_without_token=True)
    scope = _scope(
        "/__objectd/metrics",
        (b"host", b"objectd.example.com"),
        (b"authorization", b"Bearer " + TOKEN.encode()),
    )
    assert _call(routes, scope)[0] == 200


@pytest.mark.parametrize(
    ("client", "status"),
    [
        (("127.0.0.1", 50123), 200),
        (("127.9.9.9", 50123), 200),
        (("::1", 50123), 200),
        (("::ffff:127.0.0.1", 50123), 200),
        (("192.168.1.20", 50123), 403),  # dev --host 0.0.0.0: a machine on the network
        (("10.0.0.7", 50123), 403),
        (None, 403),  # the server does not say who asks
    ],
)
def test_dev_without_a_token_answers_only_a_loopback_client(
    client: tuple[str, int] | None, status: int
) -> None:
    """A loopback Host is not enough: another machine can send ``Host: localhost``."""
    routes = _routes(open_without_token=True)
    scope = _scope("/__objectd/metrics", (b"host", b"localhost:8787"), client=client)
    got, body = _call(routes, scope)
    assert got == status
    if status == 403:
        assert b"--admin-token" in body


def test_with_a_token_any_client_may_ask() -> None:
    routes = _routes(token=TOKEN, open_without_token=True)
    right = (b"authorization", b"Bearer " + TOKEN.encode())
    scope = _scope("/__objectd/metrics", right, client=("192.168.1.20", 50123))
    assert _call(routes, scope)[0] == 200


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ((), 200),  # curl, objectd inspect
        (((b"sec-fetch-site", b"same-origin"),), 200),  # the inspector's own forms
        (((b"sec-fetch-site", b"none"),), 200),  # typed into the address bar
        (((b"origin", b"http://127.0.0.1:8787"),), 200),
        (((b"origin", b"http://localhost:8787"),), 200),
        (((b"sec-fetch-site", b"cross-site"),), 403),  # a page elsewhere, fetching blind
        (((b"sec-fetch-site", b"same-site"),), 403),
        (((b"origin", b"https://attacker.example"),), 403),
        (((b"origin", b"null"),), 403),  # a sandboxed frame or a data: page
        (((b"sec-fetch-site", b"same-origin"), (b"origin", b"http://evil.example")), 403),
    ],
)
def test_dev_without_a_token_refuses_requests_from_other_sites(
    headers: tuple[tuple[bytes, bytes], ...], status: int
) -> None:
    """A page the developer visits can send requests to 127.0.0.1 (it cannot read the
    answer, but a GET may do harm or cost); the browser says where they come from."""
    routes = _routes(open_without_token=True)
    got, body = _call(routes, _scope("/__objectd/metrics", *headers))
    assert got == status
    if status == 403:
        assert b"another site" in body


@pytest.mark.parametrize(
    "cookie",
    [
        b"greeting=hello world; objectd_admin=" + TOKEN.encode(),
        b'sess="a\\"; objectd_admin=' + TOKEN.encode() + b"; theme=dark",
        b"objectd_admin=" + TOKEN.encode() + b";;, =x; junk",
        b' objectd_admin="' + TOKEN.encode() + b'"',  # quoted, as RFC 6265 allows
    ],
)
def test_one_malformed_cookie_does_not_hide_the_admin_cookie(cookie: bytes) -> None:
    """Other sites' code on localhost sets what cookies it likes; the admin cookie is
    found among them whatever they are."""
    routes = _routes(token=TOKEN)
    assert _call(routes, _scope("/__objectd/", (b"cookie", cookie))) == (200, b"pages")


def test_a_wrong_admin_cookie_among_others_is_refused() -> None:
    routes = _routes(token=TOKEN)
    cookie = (b"cookie", b"greeting=hello world; objectd_admin=" + TOKEN[:-1].encode())
    assert _call(routes, _scope("/__objectd/api/summary", cookie))[0] == 401


@pytest.mark.parametrize(("scheme", "secure"), [("https", True), ("http", False)])
def test_the_sign_in_cookie_is_secure_over_https(scheme: str, secure: bool) -> None:
    from types import SimpleNamespace

    from objectd.asgi.inspector import _login

    app = SimpleNamespace(admin=AdminRoutes(token=TOKEN))
    scope = {**_scope("/__objectd/login"), "method": "POST", "scheme": scheme}
    sent: list[Message] = []

    async def receive() -> Message:
        body = b"token=" + TOKEN.encode()
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(_login(app, scope, receive, send))  # type: ignore[arg-type]
    assert sent[0]["status"] == 303
    (cookie,) = [v.decode() for n, v in sent[0]["headers"] if n == b"set-cookie"]
    attributes = [part.strip() for part in cookie.split(";")]
    assert ("Secure" in attributes) is secure
    assert "HttpOnly" in attributes and "SameSite=Strict" in attributes


@pytest.mark.parametrize(
    ("announce", "recorded"),
    [
        ("http://0.0.0.0:8787", "http://127.0.0.1:8787/__objectd/"),
        ("http://[::]:8787", "http://[::1]:8787/__objectd/"),
        ("http://127.0.0.1:8787", "http://127.0.0.1:8787/__objectd/"),
        ("http://192.168.1.20:9000", "http://192.168.1.20:9000/__objectd/"),
    ],
)
def test_a_wildcard_bind_is_recorded_as_loopback(
    tmp_path: Any, announce: str, recorded: str
) -> None:
    """objectd inspect connects to the address in server.lock: 0.0.0.0 is where the
    server listens, not an address to connect to."""
    from types import SimpleNamespace

    from objectd.asgi.inspector import record_address
    from objectd.runtime import data_lock

    lock = data_lock.DataFolderLock(tmp_path)
    assert lock.acquire()
    try:
        app = SimpleNamespace(admin=_routes(open_without_token=True), announce=announce)
        record_address(app, SimpleNamespace(folder_lock=lock))  # type: ignore[arg-type]
        assert data_lock.read_holder(tmp_path).admin_url == recorded
    finally:
        lock.release()
