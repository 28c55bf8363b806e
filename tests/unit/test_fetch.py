"""Request, Response and Headers (spec §14; checklist 18, 19, 166)."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import pytest

from objectd.errors import DurableObjectRangeError, DurableObjectTypeError
from objectd.fetch import Headers, Request, Response

# The module itself: the package exports a function of the same name.
fetch_module = importlib.import_module("objectd.fetch")


def run(awaitable: Any) -> Any:
    async def main() -> Any:
        return await awaitable

    return asyncio.run(main())


# -- Headers ---------------------------------------------------------------------------------


def test_headers_are_case_insensitive_and_ordered() -> None:
    headers = Headers({"Content-Type": "text/html", "X-B": "1"})
    headers.append("x-a", "2")
    assert headers.get("content-type") == "text/html"
    assert headers["CONTENT-TYPE"] == "text/html"
    assert headers.has("X-b")
    assert "x-A" in headers
    assert list(headers) == ["content-type", "x-b", "x-a"]
    assert list(headers.keys()) == ["content-type", "x-b", "x-a"]
    assert list(headers.values()) == ["text/html", "1", "2"]
    assert list(headers.items()) == [("content-type", "text/html"), ("x-b", "1"), ("x-a", "2")]
    assert len(headers) == 3


def test_headers_are_multi_valued() -> None:
    headers = Headers([("Set-Cookie", "a=1"), ("set-cookie", "b=2"), ("Accept", "*/*")])
    assert headers.get("set-cookie") == "a=1, b=2"
    assert headers.get_all("Set-Cookie") == ["a=1", "b=2"]
    assert headers.getAll("set-cookie") == ["a=1", "b=2"]
    assert headers.get_set_cookie() == headers.getSetCookie() == ["a=1", "b=2"]
    assert headers.get_all("missing") == []
    assert len(headers) == 2
    assert headers.raw() == [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"accept", b"*/*")]


def test_set_replaces_every_value_in_place() -> None:
    headers = Headers([("a", "1"), ("b", "2"), ("a", "3"), ("c", "4")])
    headers.set("A", "9")
    assert headers.raw() == [(b"a", b"9"), (b"b", b"2"), (b"c", b"4")]
    headers["d"] = "5"
    assert headers.raw()[-1] == (b"d", b"5")


def test_delete_and_missing_names() -> None:
    headers = Headers([("a", "1"), ("a", "2"), ("b", "3")])
    headers.delete("A")
    assert headers.get("a") is None
    assert headers.get("a", "default") == "default"
    assert list(headers) == ["b"]
    headers.delete("never-there")  # no error, like the fetch API
    with pytest.raises(KeyError):
        headers["a"]
    with pytest.raises(KeyError):
        del headers["a"]
    del headers["b"]
    assert len(headers) == 0
    not_a_name: object = 5
    assert not_a_name not in headers
    assert "bad name" not in headers


def test_headers_mapping_helpers() -> None:
    headers = Headers()
    headers.update({"a": "1"})
    assert headers.setdefault("a", "2") == "1"
    assert headers.pop("a") == "1"
    assert not headers


def test_headers_equality() -> None:
    left = Headers([("a", "1"), ("b", "2"), ("a", "3")])
    assert left == Headers([("b", "2"), ("A", "1"), ("a", "3")])
    assert left != Headers([("a", "3"), ("b", "2"), ("a", "1")])  # order within a name
    assert Headers({"X": "1"}) == {"x": "1"}
    assert Headers({"x": "1"}) != {"bad name": "1"}
    assert Headers() != "text"
    with pytest.raises(TypeError):
        hash(Headers())


def test_headers_copy_and_init_copy_are_independent() -> None:
    original = Headers({"a": "1"})
    for copy in (original.copy(), Headers(original)):
        copy.append("b", "2")
        assert "b" not in original
        assert copy != original


def test_headers_raw_round_trip() -> None:
    raw = [(b"host", b"example.com"), (b"x-latin", "café".encode("latin-1")), (b"x-m", b"1")]
    headers = Headers.from_raw(raw)
    assert headers.get("X-Latin") == "café"
    assert headers.raw() == raw
    assert Headers.from_raw([(b"Content-Type", b"x")]).raw() == [(b"content-type", b"x")]


@pytest.mark.parametrize("name", ["", "bad name", "colon:", "é", "a\nb", "tab\t", 5, None])
def test_invalid_header_names_are_refused(name: Any) -> None:
    with pytest.raises(DurableObjectTypeError, match="Invalid header name"):
        Headers([(name, "v")])
    with pytest.raises(TypeError):
        Headers().get(name)


@pytest.mark.parametrize("value", ["a\r\nb", "a\nb", "a\rb", "nul\x00", "snow ☃"])
def test_invalid_header_values_are_refused(value: str) -> None:
    with pytest.raises(DurableObjectTypeError, match="Invalid header value"):
        Headers({"x": value})
    with pytest.raises(DurableObjectTypeError):
        Headers().set("x", value)


def test_header_values_are_trimmed_and_must_be_str() -> None:
    assert Headers({"x": "  v \t"}).get("x") == "v"
    assert Headers({"x": " \r\n"}).get("x") == ""
    with pytest.raises(DurableObjectTypeError, match="must be str, got int"):
        Headers({"x": 1})  # type: ignore[arg-type]


@pytest.mark.parametrize("init", ["name: value", b"x", [("a",)], [("a", "b", "c")], [5]])
def test_bad_headers_init_is_refused(init: Any) -> None:
    with pytest.raises(DurableObjectTypeError):
        Headers(init)


# -- Request (checklist 18, 19) ------------------------------------------------------------


def test_request_defaults() -> None:
    request = Request("https://example.com/a?b=c")
    assert request.url == "https://example.com/a?b=c"
    assert request.method == "GET"
    assert request.headers == Headers()
    assert request.body is None
    assert run(request.text()) == ""
    assert run(request.bytes()) == b""
    assert "GET https://example.com/a?b=c" in repr(request)


@pytest.mark.parametrize(
    "url", ["relative", "/path", "", "ftp://example.com/", "http://", "http://x:99999/", 5]
)
def test_request_needs_an_absolute_http_url(url: Any) -> None:  # checklist 18
    with pytest.raises(DurableObjectTypeError, match=f"^Fetch API cannot load: {url}$"):
        Request(url)


def test_request_url_gets_a_root_path() -> None:  # checklist 18
    assert Request("http://do").url == "http://do/"
    assert Request("http://do?x=1").url == "http://do/?x=1"
    assert Request("http://user@do:8080/x#f").url == "http://user@do:8080/x#f"


def test_request_method_is_upper_cased_and_checked() -> None:
    assert Request("http://x/", method="post", body="b").method == "POST"
    assert Request("http://x/", method="Patch", body="b").method == "PATCH"
    for bad in ("GE T", "", "GET\r\n", 5):
        with pytest.raises(DurableObjectTypeError, match="Invalid HTTP method"):
            Request("http://x/", method=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["GET", "HEAD", "get", "head"])
def test_get_and_head_cannot_have_a_body(method: str) -> None:
    message = r"^Request with a GET or HEAD method cannot have a body\.$"
    with pytest.raises(DurableObjectTypeError, match=message):
        Request("http://x/", method=method, body=b"")
    post = Request("http://x/", method="POST", body="data")
    with pytest.raises(DurableObjectTypeError, match=message):
        Request(post, method=method)


def test_str_body_sets_text_content_type() -> None:
    request = Request("http://x/", method="POST", body="héllo")
    assert request.body == "héllo".encode()
    assert request.headers.get("content-type") == "text/plain;charset=UTF-8"
    given = Request("http://x/", method="POST", body="{}", headers={"Content-Type": "a/b"})
    assert given.headers.get_all("content-type") == ["a/b"]
    raw = Request("http://x/", method="POST", body=b"\x00")
    assert "content-type" not in raw.headers


def test_request_body_can_be_read_many_times() -> None:
    request = Request("http://x/", method="PUT", body='{"a": [1, "é"]}')
    assert run(request.json()) == {"a": [1, "é"]}
    assert run(request.text()) == '{"a": [1, "é"]}'
    assert run(request.bytes()) == '{"a": [1, "é"]}'.encode()
    assert run(request.array_buffer()) == run(request.arrayBuffer())
    assert run(request.json()) == {"a": [1, "é"]}


def test_request_text_replaces_invalid_utf8() -> None:
    assert run(Request("http://x/", method="POST", body=b"a\xffb").text()) == "a\ufffdb"


def test_request_body_must_be_str_or_bytes() -> None:
    refused = "body must be str, bytes, Blob, FormData or an async iterable of chunks, got dict"
    with pytest.raises(DurableObjectTypeError, match=refused):
        Request("http://x/", method="POST", body={"a": 1})  # type: ignore[arg-type]
    assert Request("http://x/", method="POST", body=bytearray(b"ab")).body == b"ab"  # type: ignore[arg-type]


def test_request_from_request_copies_and_overrides() -> None:  # checklist 19
    original = Request("http://x/p", method="POST", headers={"a": "1"}, body=b"data")
    copy = Request(original)
    assert (copy.url, copy.method, copy.body) == ("http://x/p", "POST", b"data")
    assert copy.headers == original.headers
    copy.headers.set("a", "2")
    assert original.headers.get("a") == "1"

    changed = Request(original, method="PUT", headers={"b": "2"})
    assert (changed.url, changed.method, changed.body) == ("http://x/p", "PUT", b"data")
    assert list(changed.headers.items()) == [("b", "2")]

    new_body = Request(original, body="text")
    assert new_body.body == b"text"
    assert new_body.headers.get("a") == "1"


def test_request_clone_is_independent() -> None:
    request = Request("http://x/", method="POST", headers={"a": "1"}, body=b"b")
    clone = request.clone()
    clone.headers.append("a", "2")
    assert request.headers.get("a") == "1"
    assert (clone.url, clone.method, clone.body) == (request.url, "POST", b"b")


def test_request_fields_are_read_only() -> None:
    request = Request("http://x/")
    with pytest.raises(AttributeError):
        request.url = "http://y/"  # type: ignore[misc]


# -- Response (checklist 166) --------------------------------------------------------------


def test_response_defaults() -> None:
    response = Response()
    assert (response.status, response.status_text, response.ok) == (200, "OK", True)
    assert response.body == b""
    assert response.headers == Headers()
    assert response.web_socket is None
    assert response.url == ""
    assert run(response.text()) == ""
    assert repr(response) == "<Response [200]>"


def test_response_fields() -> None:  # checklist 166
    response = Response(
        "nope", status=404, status_text="Gone Fishing", headers={"X-Why": "because"}
    )
    assert response.status == 404
    assert response.status_text == response.statusText == "Gone Fishing"
    assert not response.ok
    assert response.headers.get("x-why") == "because"
    assert response.headers.get("content-type") == "text/plain;charset=UTF-8"
    assert run(response.text()) == "nope"
    assert run(response.bytes()) == b"nope"
    assert run(response.arrayBuffer()) == b"nope"


def test_default_status_text_is_the_reason_phrase() -> None:
    assert Response(status=404).status_text == "Not Found"
    assert Response(status=201).status_text == "Created"
    assert Response(status=599).status_text == ""


def test_web_socket_response() -> None:  # checklist 166
    socket = object()
    response = Response(None, status=101, web_socket=socket)
    assert response.status == 101
    assert response.web_socket is socket
    assert response.webSocket is socket
    assert response.status_text == "Switching Protocols"


def test_camel_case_keywords_of_the_javascript_init() -> None:  # checklist 166
    # `new Response(null, {status: 101, webSocket: client})`, ported to Python as is.
    socket = object()
    response = Response(None, status=101, webSocket=socket)
    assert (response.status, response.web_socket) == (101, socket)
    assert Response("x", status=418, statusText="Teapot").status_text == "Teapot"
    with pytest.raises(DurableObjectTypeError, match="both web_socket= and webSocket="):
        Response(None, status=101, web_socket=socket, webSocket=socket)
    with pytest.raises(DurableObjectTypeError, match="both status_text= and statusText="):
        Response(status_text="a", statusText="b")
    with pytest.raises(DurableObjectRangeError, match="must have status code 101"):
        Response(webSocket=socket)


@pytest.mark.parametrize("status", [100, 101, 199, 600, 0, -1, 1000])
def test_status_must_be_200_to_599(status: int) -> None:
    with pytest.raises(DurableObjectRangeError, match=rf"range 200 to 599.*got {status}\."):
        Response(status=status)
    with pytest.raises(ValueError, match="200 to 599"):  # a RangeError in JS
        Response(status=status)


def test_web_socket_needs_status_101() -> None:
    with pytest.raises(DurableObjectRangeError, match="must have status code 101, got 200"):
        Response(web_socket=object())


@pytest.mark.parametrize("status", ["200", 200.0, True, None])
def test_status_must_be_an_int(status: Any) -> None:
    with pytest.raises(DurableObjectTypeError, match="status must be an int"):
        Response(status=status)


@pytest.mark.parametrize("status", [204, 205, 304])
def test_null_body_statuses_cannot_have_a_body(status: int) -> None:
    with pytest.raises(DurableObjectTypeError, match=rf"null body status \({status}\)"):
        Response("x", status=status)
    assert Response(None, status=status).body == b""
    assert Response(b"", status=status).body == b""  # relaying an empty upstream body


def test_web_socket_response_cannot_have_a_body() -> None:
    with pytest.raises(DurableObjectTypeError, match=r"null body status \(101\)"):
        Response("x", status=101, web_socket=object())


def test_status_text_is_checked() -> None:
    with pytest.raises(DurableObjectTypeError, match="Invalid statusText"):
        Response(status_text="a\r\nSet-Cookie: x")


def test_response_json_on_the_class_builds_a_response() -> None:
    response = Response.json({"a": [1, 2.5, None], "b": "é"}, status=201)
    assert response.status == 201
    assert response.body == '{"a":[1,2.5,null],"b":"é"}'.encode()
    assert response.headers.get_all("content-type") == ["application/json"]
    custom = Response.json([], headers={"Content-Type": "application/x+json", "X": "1"})
    assert custom.headers.get_all("content-type") == ["application/x+json"]
    assert custom.headers.get("x") == "1"
    with pytest.raises(ValueError, match="JSON"):
        Response.json(float("nan"))


def test_response_json_on_an_instance_parses_the_body() -> None:
    response = Response('{"a": 1}')
    assert run(response.json()) == {"a": 1}
    assert run(Response.json({"x": [True]}).json()) == {"x": [True]}
    assert run(response.json()) == {"a": 1}  # readable again


def test_redirect() -> None:
    response = Response.redirect("https://example.com/next")
    assert response.status == 302
    assert response.headers.get("location") == "https://example.com/next"
    assert response.body == b""
    assert Response.redirect("http://x", status=308).headers.get("location") == "http://x/"
    with pytest.raises(DurableObjectRangeError, match="Invalid redirect status 200"):
        Response.redirect("http://x/", status=200)
    with pytest.raises(DurableObjectTypeError, match="Invalid redirect URL: '/relative'"):
        Response.redirect("/relative")


def test_response_clone_and_read_only_fields() -> None:
    response = Response("b", status=202, headers={"a": "1"})
    response.url = "http://origin/"
    clone = response.clone()
    clone.headers.set("a", "2")
    assert response.headers.get("a") == "1"
    assert (clone.status, clone.body, clone.url) == (202, b"b", "http://origin/")
    with pytest.raises(AttributeError):
        response.status = 500  # type: ignore[misc]


def test_checked_headers_are_remembered_but_bad_ones_never_are() -> None:
    for _ in range(2):  # the second round is served from the memos
        headers = Headers({"X-Trace": "  abc  "})
        assert headers.raw() == [(b"x-trace", b"abc")]
        with pytest.raises(DurableObjectTypeError, match="Invalid header name"):
            Headers({"bad name": "v"})
        with pytest.raises(DurableObjectTypeError, match="Invalid header value"):
            Headers({"x": "a\r\nb"})
    for n in range(fetch_module._MEMO_LIMIT + 10):
        Headers({f"x-{n}": f"v{n}"})
    assert len(fetch_module._checked_names) <= fetch_module._MEMO_LIMIT
    assert len(fetch_module._checked_values) <= fetch_module._MEMO_LIMIT


def test_checked_urls_are_remembered_but_bad_ones_never_are() -> None:
    for _ in range(2):
        assert Request("http://example.com").url == "http://example.com/"
        with pytest.raises(DurableObjectTypeError, match="Fetch API cannot load"):
            Request("http://example.com:99999/")
