"""``Request``, ``Response`` and ``Headers``: fetch-API shaped values, no I/O.

The names follow Python Workers (``workers.Request``/``Response``, spec §14) with
snake_case arguments and camelCase aliases. Bodies are kept as bytes, so a body can be
read any number of times; a body given as an async iterable of chunks is streamed
(``objectd.streams``): read once, through ``stream()`` or whole (then kept as bytes).
The checks and messages are the fetch API's (workerd's): an
absolute http(s) URL, no body on GET/HEAD, status 200-599 (101 only with a WebSocket),
no body on a null-body status, header names that are tokens and values without CR/LF.
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import (
    AsyncIterable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
)
from http import HTTPStatus
from typing import Any, Protocol, TypeAlias, overload
from urllib.parse import urlsplit

from objectd.errors import DurableObjectRangeError, DurableObjectTypeError
from objectd.forms import Blob, FormData, encode_form, parse_form
from objectd.streams import MAX_WHOLE_BYTES, BodyStream, stream_of

__all__ = ["Headers", "HeadersInit", "Request", "Response", "streamed_body"]

_Body: TypeAlias = str | bytes | Blob | FormData | AsyncIterable[bytes | str] | None
# Bodies taken whole (read into bytes at once); any other body must be an async iterable.
_WHOLE = (str, bytes, bytearray, memoryview, Blob, FormData)

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00\r\n]|[^\x00-\xff]")  # CR/LF/NUL, or not a byte string
_HTTP_WHITESPACE = " \t\r\n"
_TEXT_PLAIN = "text/plain;charset=UTF-8"
_NULL_BODY_STATUSES = frozenset({101, 204, 205, 304})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_REASONS = {status.value: status.phrase for status in HTTPStatus}


# Names and values already checked, and what they normalize to.  Requests and responses
# repeat the same few headers, and a dict lookup costs far less than the regexes; the
# memos are bounded (cleared when full) so varied input cannot grow them without limit.
_MEMO_LIMIT = 4096
_checked_names: dict[str, str] = {}
_checked_values: dict[str, str] = {}


def _name(name: object) -> str:
    if type(name) is str:
        lowered = _checked_names.get(name)
        if lowered is not None:
            return lowered
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        raise DurableObjectTypeError(f"Invalid header name: {name!r}")
    lowered = name.lower()
    if type(name) is str:
        _remember(_checked_names, name, lowered)
    return lowered


def _value(value: object) -> str:
    if type(value) is str:
        normalized = _checked_values.get(value)
        if normalized is not None:
            return normalized
    if not isinstance(value, str):
        raise DurableObjectTypeError(f"header values must be str, got {type(value).__name__}")
    stripped = value.strip(_HTTP_WHITESPACE)  # the fetch API's value normalization
    if _BAD_VALUE.search(stripped):
        raise DurableObjectTypeError(f"Invalid header value: {stripped!r}")
    if type(value) is str and len(value) <= 256:
        _remember(_checked_values, value, stripped)
    return stripped


def _remember(memo: dict[str, str], key: str, result: str) -> None:
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[key] = result


class Headers(MutableMapping[str, str]):
    """HTTP headers: case-insensitive, ordered, multi-valued.

    As a mapping it has one entry per name (lower-case, in first-seen order) whose value
    is all of the name's values joined with ``", "``; ``get_all`` and ``raw`` keep them
    apart (as ``Set-Cookie`` needs).
    """

    __slots__ = ("_pairs",)

    def __init__(self, init: HeadersInit = None) -> None:
        self._pairs: list[tuple[str, str]] = []
        if init is None:
            return
        if isinstance(init, Headers):
            self._pairs = list(init._pairs)
            return
        if type(init) is dict:  # the common case, without an ABC isinstance check
            self._pairs = [(_name(k), _value(v)) for k, v in init.items()]
            return
        pairs = init.items() if isinstance(init, Mapping) else init
        if isinstance(pairs, str | bytes):
            raise DurableObjectTypeError("Headers() needs a mapping or (name, value) pairs")
        for pair in pairs:
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise DurableObjectTypeError(f"a header must be a (name, value) pair: {pair!r}")
            self.append(pair[0], pair[1])

    @classmethod
    def from_raw(cls, raw: Iterable[tuple[bytes, bytes]]) -> Headers:
        """Headers from ASGI-style ``(name, value)`` byte pairs (latin-1)."""
        headers = cls()
        headers._pairs = [
            (_name(name.decode("latin-1")), _value(value.decode("latin-1"))) for name, value in raw
        ]
        return headers

    def raw(self) -> list[tuple[bytes, bytes]]:
        """Every pair as latin-1 bytes with lower-case names, for ASGI."""
        return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in self._pairs]

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        """All values of ``name`` joined with ``", "``, or ``default`` if there are none."""
        values = self.get_all(name)
        return ", ".join(values) if values else default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        key = _name(name)
        return [value for pair_name, value in self._pairs if pair_name == key]

    def get_set_cookie(self) -> list[str]:
        """Every ``Set-Cookie`` value: cookies cannot be joined with commas."""
        return [value for name, value in self._pairs if name == "set-cookie"]

    def has(self, name: str) -> bool:
        key = _name(name)
        for pair_name, _ in self._pairs:  # noqa: SIM110 - a loop: no generator on a hot path
            if pair_name == key:
                return True
        return False

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` by ``value`` (kept at the first one's place)."""
        key, value = _name(name), _value(value)
        index = next((i for i, (n, _) in enumerate(self._pairs) if n == key), len(self._pairs))
        rest = [pair for pair in self._pairs[index:] if pair[0] != key]
        self._pairs[index:] = [(key, value), *rest]

    def append(self, name: str, value: str) -> None:
        """Add a value for ``name``, keeping the ones it has."""
        self._pairs.append((_name(name), _value(value)))

    def delete(self, name: str) -> None:
        key = _name(name)
        self._pairs = [pair for pair in self._pairs if pair[0] != key]

    def copy(self) -> Headers:
        return Headers(self)

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: str) -> None:
        self.set(name, value)

    def __delitem__(self, name: str) -> None:
        if not self.has(name):
            raise KeyError(name)
        self.delete(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _TOKEN.fullmatch(name) is not None and self.has(name)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name for name, _ in self._pairs))

    def __len__(self) -> int:
        return len({name for name, _ in self._pairs})

    def _grouped(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for name, value in self._pairs:
            grouped.setdefault(name, []).append(value)
        return grouped

    def __eq__(self, other: object) -> bool:
        """Equal when each name has the same values in the same order."""
        if isinstance(other, Mapping) and not isinstance(other, Headers):
            try:
                other = Headers(other)
            except DurableObjectTypeError:
                return False
        if not isinstance(other, Headers):
            return NotImplemented
        return self._grouped() == other._grouped()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._pairs!r})"

    getAll = get_all
    getSetCookie = get_set_cookie


HeadersInit: TypeAlias = Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None


class _BodyMixin:
    """The body readers shared by ``Request`` and ``Response``."""

    __slots__ = ()
    _body: builtins.bytes | None  # "bytes" is a method here
    _headers: Headers
    _stream: BodyStream | None  # a streamed body not read yet

    async def text(self) -> str:
        """The body decoded as UTF-8 (invalid bytes become U+FFFD, as in the fetch API)."""
        return (await self.bytes()).decode("utf-8", "replace")

    async def bytes(self) -> builtins.bytes:
        """The body; a streamed one is read whole first (every reader goes through here)."""
        if self._stream is not None:
            await self._read_stream()
        return self._body or b""

    async def array_buffer(self) -> builtins.bytes:
        return await self.bytes()

    async def _parse_json(self) -> Any:
        return json.loads(await self.bytes())

    async def form_data(self) -> FormData:
        """The body's form fields (``multipart/form-data`` or urlencoded)."""
        return parse_form(await self.bytes(), self._headers.get("content-type"))

    async def blob(self) -> Blob:
        """The body as a ``Blob`` whose type is the content type."""
        return Blob([await self.bytes()], self._headers.get("content-type") or "")

    async def _read_stream(self) -> None:
        """Read a streamed body whole, at most ``MAX_WHOLE_BYTES``; from then on it is
        kept as bytes."""
        stream = self._stream
        assert stream is not None
        # The slots are the subclasses' (``Request``, ``Response``), as the readers are.
        self._body = await stream.read(MAX_WHOLE_BYTES) or None  # type: ignore[misc]
        self._stream = None  # type: ignore[misc]

    def stream(self) -> BodyStream:
        """The body as an async iterator of ``bytes`` chunks (``async for chunk in ...``).

        A streamed body is iterated once, as it is produced; a whole body is one chunk.
        """
        if self._stream is not None:
            return self._stream
        return BodyStream.of_bytes(self._body)

    def _whole_body(self) -> builtins.bytes | None:
        if self._stream is not None:
            raise DurableObjectTypeError(
                "a streamed body is read once: read it whole (await bytes()) to copy it"
            )
        return self._body

    arrayBuffer = array_buffer
    formData = form_data


def streamed_body(message: Request | Response) -> BodyStream | None:
    """The streamed body of ``message`` not read yet, or None (it is whole)."""
    return message._stream


def _body_bytes(body: object, headers: Headers) -> bytes | None:
    if body is None:
        return None
    if isinstance(body, str):
        if not headers.has("content-type"):
            headers.set("content-type", _TEXT_PLAIN)
        return body.encode("utf-8")
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    if isinstance(body, FormData):  # spec §14: Python Workers bodies may be forms and blobs
        data, content_type = encode_form(body)
        if not headers.has("content-type"):
            headers.set("content-type", content_type)
        return data
    if isinstance(body, Blob):
        if body.content_type and not headers.has("content-type"):
            headers.set("content-type", body.content_type)
        return body._data
    raise DurableObjectTypeError(
        f"a body must be str, bytes, Blob or FormData, got {type(body).__name__}"
    )


_checked_urls: dict[str, str] = {}


def _check_url(url: object) -> str:
    if type(url) is str:
        checked = _checked_urls.get(url)
        if checked is not None:
            return checked
    if isinstance(url, str):
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            pass
        else:
            if parts.scheme in ("http", "https") and parts.hostname:
                # As the URL parser would: "http://host" is "http://host/".
                checked = url if parts.path else parts._replace(path="/").geturl()
                if type(url) is str and len(url) <= 2048:
                    _remember(_checked_urls, url, checked)
                return checked
    raise DurableObjectTypeError(f"Fetch API cannot load: {url}")


class Request(_BodyMixin):
    """An HTTP request: ``Request(url_or_request, method=, headers=, body=)``.

    Built from another ``Request``, it copies it and applies the given overrides.
    """

    __slots__ = ("_body", "_headers", "_method", "_stream", "_url")
    _url: str
    _method: str
    _headers: Headers

    def __init__(
        self,
        input: str | Request,
        *,
        method: str | None = None,
        headers: HeadersInit = None,
        body: _Body = None,
    ) -> None:
        base_stream: BodyStream | None = None
        if isinstance(input, Request):
            url, base_method, base_body = input._url, input._method, input._body
            base_headers: HeadersInit = input._headers
            base_stream = input._stream  # shared: whichever reads it first has it
        else:
            url, base_method, base_body, base_headers = _check_url(input), "GET", None, None
        if method is not None and (not isinstance(method, str) or not _TOKEN.fullmatch(method)):
            raise DurableObjectTypeError(f"Invalid HTTP method: {method!r}")
        self._url = url
        self._method = method.upper() if method is not None else base_method
        self._headers = Headers(headers if headers is not None else base_headers)
        self._stream = None
        if body is None:
            self._body, self._stream = base_body, base_stream
        elif isinstance(body, _WHOLE):
            self._body = _body_bytes(body, self._headers)
        else:
            self._body, self._stream = None, stream_of(body)
        if (self._body is not None or self._stream is not None) and self._method in (
            "GET",
            "HEAD",
        ):
            raise DurableObjectTypeError("Request with a GET or HEAD method cannot have a body.")

    @property
    def url(self) -> str:
        return self._url

    @property
    def method(self) -> str:
        return self._method

    @property
    def headers(self) -> Headers:
        return self._headers

    @property
    def body(self) -> bytes | BodyStream | None:
        """The body: bytes, or a streamed body not read yet as its :class:`BodyStream` (as
        the fetch API's ``body`` is a stream), so ``Request(url, body=request.body)``
        passes an upload on without reading it."""
        if self._stream is not None:
            return self._stream
        return self._body

    async def json(self) -> Any:
        """The body parsed as JSON."""
        return await self._parse_json()

    def clone(self) -> Request:
        self._whole_body()  # a stream is read once: it cannot be cloned
        return Request(self)

    def __repr__(self) -> str:
        return f"<Request {self._method} {self._url}>"


class _JsonFactory(Protocol):
    def __call__(
        self, data: Any, status: int = 200, status_text: str = "", headers: HeadersInit = None
    ) -> Response: ...


class _JsonMethod:
    """``Response.json``: a constructor on the class, a body parser on an instance.

    The fetch API has both ``Response.json(data)`` (static: build a JSON response) and
    ``await response.json()`` (read the body). Python has one namespace per class, so
    this descriptor looks at how it is reached: through the class it returns the
    factory, through an instance the instance's ``_parse_json`` coroutine method.
    """

    @overload
    def __get__(self, instance: None, owner: type[Response]) -> _JsonFactory: ...
    @overload
    def __get__(
        self, instance: Response, owner: type[Response] | None = None
    ) -> Callable[[], Coroutine[Any, Any, Any]]: ...
    def __get__(
        self, instance: Response | None, owner: type[Response] | None = None
    ) -> _JsonFactory | Callable[[], Coroutine[Any, Any, Any]]:
        if instance is not None:
            return instance._parse_json
        return _json_response


def _json_response(
    data: Any, status: int = 200, status_text: str = "", headers: HeadersInit = None
) -> Response:
    # JSON.stringify's compact form; NaN and Infinity are refused, as JSON has neither.
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    merged = Headers(headers)
    if not merged.has("content-type"):
        merged.set("content-type", "application/json")
    return Response(text, status=status, status_text=status_text, headers=merged)


class Response(_BodyMixin):
    """An HTTP response: ``Response(body, status=, status_text=, headers=, web_socket=)``.

    ``statusText=`` and ``webSocket=`` are accepted too: they are the JavaScript init's
    names (``new Response(null, {status: 101, webSocket: client})``), which code ported
    to Python keeps.
    """

    __slots__ = ("_body", "_headers", "_status", "_status_text", "_stream", "_web_socket", "url")
    _headers: Headers
    _status: int
    _status_text: str
    _web_socket: object | None
    url: str

    def __init__(
        self,
        body: _Body = None,
        status: int = 200,
        status_text: str = "",
        headers: HeadersInit = None,
        web_socket: object | None = None,
        *,
        statusText: str | None = None,
        webSocket: object | None = None,
    ) -> None:
        if statusText is not None:
            if status_text:
                raise DurableObjectTypeError("Response() got both status_text= and statusText=")
            status_text = statusText
        if webSocket is not None:
            if web_socket is not None:
                raise DurableObjectTypeError("Response() got both web_socket= and webSocket=")
            web_socket = webSocket
        if not isinstance(status, int) or isinstance(status, bool):
            raise DurableObjectTypeError(f"status must be an int, got {type(status).__name__}")
        if web_socket is not None and status != 101:
            raise DurableObjectRangeError(
                f"Responses with a WebSocket must have status code 101, got {status}."
            )
        if not (200 <= status <= 599 or (status == 101 and web_socket is not None)):
            raise DurableObjectRangeError(
                "Responses may only be constructed with status codes in the range 200 to 599, "
                f"inclusive (or 101 together with a web_socket); got {status}."
            )
        if not isinstance(status_text, str) or _BAD_VALUE.search(status_text):
            raise DurableObjectTypeError(f"Invalid statusText: {status_text!r}")
        self._headers = Headers(headers)
        if body is None or isinstance(body, _WHOLE):
            self._body = _body_bytes(body, self._headers)
            self._stream = None
        else:  # streamed: no Content-Type is implied, no length is known
            self._body = None
            self._stream = stream_of(body)
        # An empty body counts as none, so relaying a 204 read from upstream just works.
        if (self._body or self._stream is not None) and status in _NULL_BODY_STATUSES:
            raise DurableObjectTypeError(
                f"Response with null body status ({status}) cannot have a body."
            )
        self._status = status
        self._status_text = status_text or _REASONS.get(status, "")
        self._web_socket = web_socket
        self.url = ""  # set by the outbound fetch for responses it received

    json = _JsonMethod()

    @classmethod
    def redirect(cls, url: str, status: int = 302) -> Response:
        """A redirect to the absolute ``url`` with a 301, 302, 303, 307 or 308 status."""
        if status not in _REDIRECT_STATUSES:
            raise DurableObjectRangeError(
                f"Invalid redirect status {status!r}: use 301, 302, 303, 307 or 308."
            )
        try:
            location = _check_url(url)
        except DurableObjectTypeError:
            raise DurableObjectTypeError(f"Invalid redirect URL: {url!r}") from None
        return cls(None, status=status, headers={"location": location})

    @property
    def status(self) -> int:
        return self._status

    @property
    def status_text(self) -> str:
        return self._status_text

    @property
    def headers(self) -> Headers:
        return self._headers

    @property
    def body(self) -> bytes | BodyStream:
        """The body: bytes, or a streamed body not read yet as its :class:`BodyStream`."""
        if self._stream is not None:
            return self._stream
        return self._body or b""

    @property
    def ok(self) -> bool:
        return 200 <= self._status <= 299

    @property
    def web_socket(self) -> object | None:
        return self._web_socket

    def clone(self) -> Response:
        copy = Response(
            self._whole_body(),  # a stream is read once: it cannot be cloned
            status=self._status,
            status_text=self._status_text,
            headers=self._headers,
            web_socket=self._web_socket,
        )
        copy.url = self.url
        return copy

    def __repr__(self) -> str:
        return f"<Response [{self._status}]>"

    statusText = status_text
    webSocket = web_socket
