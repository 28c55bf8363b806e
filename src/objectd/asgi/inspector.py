"""The inspector under ``/__objectd/`` (L3): its JSON API and its web pages (issue 14 §2).

The JSON API (``/__objectd/api/…``) is what ``objectd inspect`` and ``objectd export``
read when a server holds the data; the pages are plain server-rendered HTML, every
value escaped, no script and no build step.  Both sit behind the admin rule
(``asgi.admin``) and read through ``runtime.inspection.LiveInspector``, which never
opens a live object's file a second time.

=====================================  ==========================================
``GET api/summary``                    the script's classes and their object counts
``GET api/objects?class=C&search=S``   a class's objects: id, name, size, last write,
                                       alarm, open sockets
``GET api/ids?class=C``                every stored id of a class, and the known names
``GET api/object?class=C&id=X``        one object: KV pairs (decoded; ``kv_prefix``,
                                       ``kv_after`` page them), tables, sockets
``GET api/query?class=C&id=X&sql=Q``   a read-only query against one object
``GET api/alarms``                     every stored alarm, soonest first
``GET api/snapshot?class=C&id=X``      the object's database, as a SQLite file
``/``, ``class``, ``object``,          the same as pages; ``login`` sets the token
``alarms``, ``login``                  cookie for a browser
=====================================  ==========================================

``X`` is an object's id (64 hex digits) or the name it was derived from.
"""

from __future__ import annotations

import html
import json
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from objectd.asgi.admin import ADMIN_PREFIX, LOGIN_PATH, TOKEN_COOKIE, Receive, Scope, Send
from objectd.runtime.inspection import InspectError, LiveInspector

if TYPE_CHECKING:
    from objectd.asgi.app import ObjectdApp
    from objectd.runtime.project import Project

__all__ = ["API_PREFIX", "install", "record_address"]

API_PREFIX = ADMIN_PREFIX + "api/"
_COOKIE_SAFE = re.compile(r"[!#-+\--:<-\[\]-~]+")  # RFC 6265 cookie-octets
_MAX_FORM_BYTES = 4096  # the login form's body, at most
_JSON = (b"content-type", b"application/json; charset=utf-8")
_HTML = (b"content-type", b"text/html; charset=utf-8")
_NO_STORE = (b"cache-control", b"no-store")
# No script, no frames, nothing from elsewhere: the pages show stored data, and stored
# data is whatever the objects' users sent.
_CSP = (
    b"content-security-policy",
    b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
)


def install(app: ObjectdApp) -> None:
    """Register the inspector's routes on ``app.admin``."""

    async def project() -> Project:
        return app.project or await app.startup()

    async def api(scope: Scope, receive: Receive, send: Send) -> None:
        await _api(await project(), scope, send)

    async def pages(scope: Scope, receive: Receive, send: Send) -> None:
        await _pages(await project(), scope, send)

    async def login(scope: Scope, receive: Receive, send: Send) -> None:
        await _login(app, scope, receive, send)

    app.admin.add(API_PREFIX, api)
    app.admin.add(ADMIN_PREFIX, pages)
    app.admin.set_login(login)


def record_address(app: ObjectdApp, project: Project) -> None:
    """Note the admin URL in the data folder's lock file, for ``objectd inspect``."""
    if app.admin.enabled and app.announce and project.folder_lock is not None:
        project.folder_lock.record_address(_reachable(app.announce) + ADMIN_PREFIX)


def _reachable(url: str) -> str:
    """``url`` with a wildcard bind (0.0.0.0, ::) replaced by the loopback address on
    which the server also listens: a client cannot connect to 0.0.0.0."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname, parts.port
    if host not in ("0.0.0.0", "::") or port is None:
        return url
    loopback = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{loopback}:{port}"))


def _query(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    return {k: v[0] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}


def _need(query: dict[str, str], *names: str) -> list[str]:
    missing = [name for name in names if not query.get(name)]
    if missing:
        raise InspectError(f"missing query parameter(s): {', '.join(missing)}")
    return [query[name] for name in names]


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, _NO_STORE, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# -- the JSON API -------------------------------------------------------------------------


async def _api(project: Project, scope: Scope, send: Send) -> None:
    inspector = LiveInspector(project)
    what = scope["path"].removeprefix(API_PREFIX)
    query = _query(scope)
    try:
        if what == "snapshot":
            class_name, oid = _need(query, "class", "id")
            data = await inspector.snapshot(class_name, oid)
            await _send(send, 200, data, [(b"content-type", b"application/vnd.sqlite3")])
            return
        result = await _answer(inspector, what, query)
    except InspectError as exc:
        body = json.dumps({"error": str(exc)}).encode()
        await _send(send, exc.status, body, [_JSON])
        return
    if result is None:
        await _send(send, 404, json.dumps({"error": f"no API {what!r}"}).encode(), [_JSON])
        return
    await _send(send, 200, json.dumps(result, ensure_ascii=False).encode(), [_JSON])


def _kv_range(query: dict[str, str]) -> dict[str, Any]:
    return {"kv_prefix": query.get("kv_prefix", ""), "kv_after": query.get("kv_after")}


async def _answer(inspector: LiveInspector, what: str, query: dict[str, str]) -> Any:
    if what == "summary":
        return await inspector.summary()
    if what == "objects":
        (class_name,) = _need(query, "class")
        return await inspector.objects(class_name, search=query.get("search"))
    if what == "ids":
        (class_name,) = _need(query, "class")
        return await inspector.ids(class_name)
    if what == "object":
        class_name, oid = _need(query, "class", "id")
        return await inspector.object(class_name, oid, **_kv_range(query))
    if what == "query":
        class_name, oid, sql = _need(query, "class", "id", "sql")
        return await inspector.query(class_name, oid, sql)
    if what == "alarms":
        return await inspector.alarms()
    return None


# -- the pages ----------------------------------------------------------------------------

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f3f3f3}code,pre,td.v{font-family:monospace}
pre{white-space:pre-wrap;margin:0}nav a{margin-right:1em}.due{color:#b00;font-weight:bold}
.error{color:#b00}textarea{width:100%;font-family:monospace}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _link(page: str, text: str, css: str = "", **params: str) -> str:
    href = ADMIN_PREFIX + page + ("?" + urllib.parse.urlencode(params) if params else "")
    cls = f' class="{_e(css)}"' if css else ""
    return f'<a{cls} href="{_e(href)}">{_e(text)}</a>'


def _page(title: str, body: str, script: str = "") -> bytes:
    nav = f"<nav>{_link('', 'classes')}{_link('alarms', 'alarms')}</nav>"
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{_e(title)} · objectd'
        f"</title><style>{_STYLE}</style></head><body>{nav}"
        f"<h1>{_e(title)}</h1>{body}</body></html>"
    ).encode()


def _table(headers: list[str], rows: list[list[str]], table_id: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    ident = f' id="{_e(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


async def _pages(project: Project, scope: Scope, send: Send) -> None:
    inspector = LiveInspector(project)
    page = scope["path"].removeprefix(ADMIN_PREFIX).strip("/")
    query = _query(scope)
    renderers: dict[str, Callable[[LiveInspector, dict[str, str]], Awaitable[tuple[str, str]]]] = {
        "": _home,
        "class": _class_page,
        "object": _object_page,
        "alarms": _alarms_page,
    }
    renderer = renderers.get(page)
    headers = [_HTML, _CSP]
    if renderer is None:
        body = _page("Not found", f"<p>Nothing at {_e(scope['path'])}.</p>")
        await _send(send, 404, body, headers)
        return
    try:
        title, content = await renderer(inspector, query)
    except InspectError as exc:
        body = _page("Error", f'<p class="error">{_e(exc)}</p>')
        await _send(send, exc.status, body, headers)
        return
    await _send(send, 200, _page(title, content), headers)


async def _home(inspector: LiveInspector, _query: dict[str, str]) -> tuple[str, str]:
    summary = await inspector.summary()
    rows = [
        [
            _link("class", c["class"], "class", **{"class": c["class"]}),
            _e(c["backend"]),
            _e(c["objects"]),
        ]
        for c in summary["classes"]
    ]
    return f"Script {summary['script']}", _table(["class", "backend", "objects"], rows, "classes")


async def _class_page(inspector: LiveInspector, query: dict[str, str]) -> tuple[str, str]:
    (class_name,) = _need(query, "class")
    search = query.get("search", "")
    listing = await inspector.objects(class_name, search=search or None)
    form = (
        f'<form method="get" action="{_e(ADMIN_PREFIX + "class")}">'
        f'<input type="hidden" name="class" value="{_e(class_name)}">'
        f'<input id="search" name="search" value="{_e(search)}" '
        'placeholder="id prefix or name"> <button type="submit">search</button></form>'
    )
    rows = [
        [
            _link("object", o["id"][:16] + "…", "object", **{"class": class_name, "id": o["id"]}),
            _e(o["name"] or ""),
            _e(o["size"]),
            _e(o["last_write"]),
            _e(o["alarm"] or ""),
            _e(o["sockets"]),
        ]
        for o in listing["objects"]
    ]
    more = "<p>(more objects than shown: search to narrow)</p>" if listing["truncated"] else ""
    table = _table(["id", "name", "bytes", "last write", "alarm", "sockets"], rows, "objects")
    return f"Class {class_name}", form + table + more


async def _object_page(inspector: LiveInspector, query: dict[str, str]) -> tuple[str, str]:
    class_name, oid = _need(query, "class", "id")
    item = await inspector.object(class_name, oid, **_kv_range(query))
    prefix = query.get("kv_prefix", "")
    kv_form = (
        f'<form id="kv-filter" method="get" action="{_e(ADMIN_PREFIX + "object")}">'
        f'<input type="hidden" name="class" value="{_e(class_name)}">'
        f'<input type="hidden" name="id" value="{_e(item["id"])}">'
        f'<input id="kv_prefix" name="kv_prefix" value="{_e(prefix)}" placeholder="key prefix">'
        ' <button type="submit">filter</button></form>'
    )
    parts = [
        "<dl>"
        f"<dt>id</dt><dd><code>{_e(item['id'])}</code></dd>"
        f"<dt>name</dt><dd>{_e(item['name'] or '(not known)')}</dd>"
        f"<dt>bytes on disk</dt><dd>{_e(item['size'])}</dd>"
        f"<dt>last write</dt><dd>{_e(item['last_write'])}</dd>"
        f"<dt>alarm</dt><dd>{_e(item['alarm'] or 'none')}</dd></dl>",
        "<h2>KV</h2>",
        kv_form,
        _table(
            ["key", "value", "bytes"],
            [
                [f"<code>{_e(kv['key'])}</code>", f"<pre>{_e(kv['repr'])}</pre>", _e(kv["size"])]
                for kv in item["kv"]
            ],
            "kv",
        ),
    ]
    if item["kv_truncated"] and item["kv"]:
        after = {"class": class_name, "id": item["id"], "kv_prefix": prefix}
        after["kv_after"] = item["kv"][-1]["key"]
        parts.append(f"<p>{_link('object', 'next pairs →', 'next', **after)}</p>")
    parts.append('<h2>SQL tables</h2><div id="tables">')
    for table in item["tables"]:
        count = "? (too slow to count)" if table["count"] is None else table["count"]
        shown = f", the first {len(table['rows'])} shown" if table.get("truncated") else ""
        parts.append(f"<h3>{_e(table['name'])} ({_e(count)} rows{_e(shown)})</h3>")
        parts.append(f"<pre>{_e(table['sql'])}</pre>")
        parts.append(_table(table["columns"], [[_e(v) for v in r] for r in table["rows"]]))
    parts.append("</div><h2>Live WebSockets</h2>")
    sockets = item["socket_list"] or []
    kinds = {True: "hibernatable", False: "standard API"}
    parts.append(
        _table(
            ["state", "kind", "tags"],
            [
                [_e(s["state"]), _e(kinds[s["hibernatable"]]), _e(", ".join(s["tags"]))]
                for s in sockets
            ],
            "sockets",
        )
    )
    sql = query.get("sql", "")
    parts.append(
        "<h2>Read-only SQL</h2>"
        f'<form id="console" method="get" action="{_e(ADMIN_PREFIX + "object")}">'
        f'<input type="hidden" name="class" value="{_e(class_name)}">'
        f'<input type="hidden" name="id" value="{_e(item["id"])}">'
        f'<textarea id="sql" name="sql" rows="3">{_e(sql)}</textarea>'
        '<button id="run" type="submit">run</button></form>'
    )
    if sql:
        try:
            result = await inspector.query(class_name, item["id"], sql)
        except InspectError as exc:
            parts.append(f'<p id="result" class="error">{_e(exc)}</p>')
        else:
            rows = [[_e(v) for v in row] for row in result["rows"]]
            parts.append(_table(result["columns"], rows, "result"))
    return f"{class_name} {item['name'] or item['id'][:16]}", "".join(parts)


async def _alarms_page(inspector: LiveInspector, _query: dict[str, str]) -> tuple[str, str]:
    found = await inspector.alarms()
    now_ms = inspector.now() * 1000
    rows = [
        [
            f'<span class="due">{_e(a["alarm"])} (due)</span>' if a["due"] else _e(a["alarm"]),
            _e(_from_now(a["alarm_ms"] - now_ms)),
            _e(a["class"]),
            _link(
                "object",
                a["name"] or a["id"][:16] + "…",
                "object",
                **{"class": a["class"], "id": a["id"]},
            ),
        ]
        for a in found["alarms"]
    ]
    intro = f"<p>Now: {_e(found['now'])}. Soonest first.</p>"
    return "Alarms", intro + _table(["time", "", "class", "object"], rows, "alarms")


def _from_now(ms: float) -> str:
    """``in 3 h 20 min`` / ``5 s ago``: where an alarm sits on the timeline."""
    seconds = abs(ms) / 1000
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            parts.append(f"{int(seconds // size)} {unit}")
            seconds %= size
        if len(parts) == 2:
            break
    text = " ".join(parts) or f"{int(seconds)} s"
    return f"in {text}" if ms >= 0 else f"{text} ago"


# -- signing in from a browser ------------------------------------------------------------


async def _login(app: ObjectdApp, scope: Scope, receive: Receive, send: Send) -> None:
    headers = [_HTML, _CSP]
    error = ""
    if scope.get("method") == "POST":
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > _MAX_FORM_BYTES:
                await _send(send, 413, _page("Too large", "<p>Form too large.</p>"), headers)
                return
            if not message.get("more_body", False):
                break
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        token = form.get("token", [""])[0]
        if app.admin.token_matches(token) and _COOKIE_SAFE.fullmatch(token):
            cookie = f"{TOKEN_COOKIE}={token}; Path={ADMIN_PREFIX}; HttpOnly; SameSite=Strict"
            if scope.get("scheme") == "https":  # then never sent over plain HTTP
                cookie += "; Secure"
            redirect = [(b"location", ADMIN_PREFIX.encode()), (b"set-cookie", cookie.encode())]
            await _send(send, 303, b"", redirect)
            return
        error = (
            '<p class="error">That is not the admin token (or it has characters a cookie '
            "cannot carry: space, quotes, comma, semicolon, backslash).</p>"
        )
    form_html = (
        f'{error}<form method="post" action="{_e(LOGIN_PATH)}">'
        '<label>Admin token <input id="token" type="password" name="token" '
        'autocomplete="current-password"></label> <button type="submit">sign in</button></form>'
    )
    await _send(send, 401 if error else 200, _page("objectd admin", form_html), headers)
