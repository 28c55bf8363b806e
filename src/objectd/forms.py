"""``Blob``, ``File`` and ``FormData``: the fetch API's form values, as Python Workers has them.

Cloudflare's Python SDK (``workers.Blob``, ``workers.File``, ``workers.FormData``) wraps
the JavaScript objects; here they are plain values with the same Python surface:

* ``Blob(parts, content_type=None, endings=None)``: parts are ``str`` (UTF-8), bytes-like
  values or other blobs, or one of them alone; ``size``, ``content_type``, ``await
  text()`` / ``bytes()``, ``slice(start, end, content_type)`` with the fetch API's
  negative indices.  A type that is not printable ASCII becomes ``""``, as in browsers.
* ``File(parts, filename, content_type=None, endings=None, last_modified=None)``: a blob
  with ``name`` and ``last_modified`` (ms since the epoch; now by default).
* ``FormData``: an ordered multi-dict of ``str`` and ``File`` values (a ``Blob`` appended
  becomes a ``File`` named ``"blob"`` or its ``filename``): ``form[key]`` is the first
  value (``None`` when absent, as Python Workers returns), ``form[key] = value`` replaces
  every value, ``append``, ``get_all``, ``delete``, ``keys``/``values``/``items`` with
  repeated keys, and the JavaScript names (``getAll``, ``has``, ``set``, ``entries``).

A ``Response`` or ``Request`` body may be a ``Blob`` (its type becomes the content type)
or a ``FormData`` (sent as ``multipart/form-data``); ``await request.form_data()`` reads
``multipart/form-data`` (parsed by ``python-multipart``, the parser Starlette uses) and
``application/x-www-form-urlencoded`` bodies.
"""

from __future__ import annotations

import builtins
import enum
import os
import re
import secrets
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import TypeAlias

from python_multipart.multipart import MultipartParser, parse_options_header

from objectd.errors import DurableObjectTypeError

__all__ = [
    "Blob",
    "BlobEnding",
    "BlobValue",
    "File",
    "FormData",
    "FormDataValue",
    "encode_form",
    "parse_form",
]


class BlobEnding(enum.StrEnum):
    """How ``\\n`` in ``str`` parts is written: as it is, or as the platform's line end."""

    TRANSPARENT = "transparent"
    NATIVE = "native"


BlobValue: TypeAlias = "str | builtins.bytes | bytearray | memoryview | Blob"
_LINE_ENDS = re.compile(r"\r\n|\r|\n")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")


def _content_type(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DurableObjectTypeError(
            f"a Blob content type must be a str, got {type(value).__name__}"
        )
    return value.lower() if _PRINTABLE_ASCII.fullmatch(value) else ""


def _endings(value: object) -> BlobEnding:
    if value is None:
        return BlobEnding.TRANSPARENT
    try:
        return BlobEnding(str(value))
    except ValueError:
        raise DurableObjectTypeError(
            f"unknown Blob endings {value!r}; allowed: 'transparent', 'native'"
        ) from None


def _part_bytes(part: object, endings: BlobEnding) -> builtins.bytes:
    if isinstance(part, str):
        if endings is BlobEnding.NATIVE:
            part = _LINE_ENDS.sub(lambda _: os.linesep, part)
        return part.encode("utf-8", "replace")
    if isinstance(part, Blob):
        return part._data
    if isinstance(part, builtins.bytes | bytearray | memoryview):
        return builtins.bytes(part)
    raise DurableObjectTypeError(
        f"a Blob part must be str, bytes-like or a Blob, got {type(part).__name__}"
    )


class Blob:
    """Immutable bytes with a content type (the fetch API's ``Blob``)."""

    __slots__ = ("_data", "_type")
    _data: builtins.bytes
    _type: str

    def __init__(
        self,
        blob_parts: Iterable[BlobValue] | BlobValue = (),
        content_type: str | None = None,
        endings: BlobEnding | str | None = None,
    ) -> None:
        mode = _endings(endings)
        if isinstance(blob_parts, str | builtins.bytes | bytearray | memoryview | Blob):
            if content_type is None and isinstance(blob_parts, Blob):
                content_type = blob_parts._type  # one blob alone keeps its type
            blob_parts = [blob_parts]
        elif not isinstance(blob_parts, Iterable):
            raise DurableObjectTypeError(
                f"Blob parts must be an iterable of str, bytes or Blob, "
                f"got {type(blob_parts).__name__}"
            )
        self._data = b"".join(_part_bytes(part, mode) for part in blob_parts)
        self._type = _content_type(content_type)

    @property
    def size(self) -> int:
        return len(self._data)

    @property
    def content_type(self) -> str:
        return self._type

    @property
    def type(self) -> str:
        """The JavaScript name of ``content_type``."""
        return self._type

    async def text(self) -> str:
        return self._data.decode("utf-8", "replace")

    async def bytes(self) -> builtins.bytes:
        return self._data

    async def array_buffer(self) -> builtins.bytes:
        return self._data

    def slice(
        self, start: int | None = None, end: int | None = None, content_type: str | None = None
    ) -> Blob:
        """The bytes from ``start`` to ``end`` (negative: from the end), as a new blob."""
        return Blob([self._data[slice(start, end)]], content_type)

    def __repr__(self) -> str:
        return f"Blob(size={self.size}, content_type={self._type!r})"

    arrayBuffer = array_buffer


class File(Blob):
    """A blob with a file name and a modification time (the fetch API's ``File``)."""

    __slots__ = ("_last_modified", "_name")
    _last_modified: int
    _name: str

    def __init__(
        self,
        blob_parts: Iterable[BlobValue] | BlobValue,
        filename: str,
        content_type: str | None = None,
        endings: BlobEnding | str | None = None,
        last_modified: int | None = None,
    ) -> None:
        if not isinstance(filename, str):
            raise DurableObjectTypeError(
                f"a File name must be a str, got {type(filename).__name__}"
            )
        if last_modified is None and isinstance(blob_parts, File):
            last_modified = blob_parts._last_modified
        super().__init__(blob_parts, content_type, endings)
        self._name = filename
        self._last_modified = (
            int(time.time() * 1000) if last_modified is None else int(last_modified)
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def last_modified(self) -> int:
        return self._last_modified

    @property
    def lastModified(self) -> int:
        return self._last_modified

    def __repr__(self) -> str:
        return f"File({self._name!r}, size={self.size}, content_type={self._type!r})"


FormDataValue: TypeAlias = "str | Blob"


def _entry(value: object, filename: str | None) -> str | File:
    if isinstance(value, Blob):
        if isinstance(value, File) and filename is None:
            return value
        return File(value, "blob" if filename is None else filename)
    if isinstance(value, str):
        if filename is not None:
            raise DurableObjectTypeError("a filename can only be given with a Blob or File value")
        return value
    raise DurableObjectTypeError(
        f"a FormData value must be a str, Blob or File, got {type(value).__name__}"
    )


class FormData(MutableMapping[str, FormDataValue]):
    """Form fields in order, a name possibly repeated (the fetch API's ``FormData``)."""

    __slots__ = ("_entries",)

    def __init__(self, form_data: FormData | Mapping[str, FormDataValue] | None = None) -> None:
        self._entries: list[tuple[str, str | File]] = []
        if form_data is None:
            return
        if isinstance(form_data, FormData):
            self._entries = list(form_data._entries)
        elif isinstance(form_data, Mapping):
            for key, value in form_data.items():
                self.append(key, value)
        else:
            raise DurableObjectTypeError(
                "Expected form_data to be a dict or an instance of FormData"
            )

    def __getitem__(self, key: str) -> FormDataValue:
        """The first value of ``key``; ``None`` when there is none, as in Python Workers."""
        for name, value in self._entries:
            if name == key:
                return value
        return None  # type: ignore[return-value]

    def __setitem__(self, key: str, value: FormDataValue) -> None:
        if isinstance(value, list):
            raise DurableObjectTypeError(
                "Expected single item in arguments to FormData.__setitem__"
            )
        self.set(key, value)

    def __delitem__(self, key: str) -> None:
        self.delete(key)

    def __contains__(self, key: object) -> bool:
        return any(name == key for name, _ in self._entries)

    def __iter__(self) -> Iterator[str]:
        return self.keys()

    def __len__(self) -> int:
        return len(self._entries)

    def set(self, key: str, value: FormDataValue, filename: str | None = None) -> None:
        """Replace every value of ``key`` with ``value`` (in the place of the first)."""
        entry = _entry(value, filename)
        at = next((i for i, (name, _) in enumerate(self._entries) if name == key), None)
        self.delete(key)
        self._entries.insert(len(self._entries) if at is None else at, (_key(key), entry))

    def append(self, key: str, value: FormDataValue, filename: str | None = None) -> None:
        self._entries.append((_key(key), _entry(value, filename)))

    def delete(self, key: str) -> None:
        self._entries = [(name, value) for name, value in self._entries if name != key]

    def has(self, key: str) -> bool:
        return key in self

    def get_all(self, key: str) -> list[FormDataValue]:
        return [value for name, value in self._entries if name == key]

    def keys(self) -> Iterator[str]:  # type: ignore[override]
        """Every entry's name, repeated names included (the fetch API's ``keys()``)."""
        return (name for name, _ in list(self._entries))

    def values(self) -> Iterator[FormDataValue]:  # type: ignore[override]
        return (value for _, value in list(self._entries))

    def items(self) -> Iterator[tuple[str, FormDataValue]]:  # type: ignore[override]
        return iter(list(self._entries))

    def __repr__(self) -> str:
        return f"FormData({self._entries!r})"

    getAll = get_all
    entries = items


def _key(key: object) -> str:
    if not isinstance(key, str):
        raise DurableObjectTypeError(f"a FormData name must be a str, got {type(key).__name__}")
    return key


# -- bodies ---------------------------------------------------------------------------------


def _quote(value: str) -> str:
    # The HTML form-data encoding: newlines normalised and escaped, quotes percent-encoded.
    return _LINE_ENDS.sub("%0D%0A", value).replace('"', "%22")


def encode_form(form: FormData) -> tuple[builtins.bytes, str]:
    """``form`` as a ``multipart/form-data`` body, and its content type (with the boundary)."""
    boundary = "----objectdFormBoundary" + secrets.token_hex(16)
    out: list[builtins.bytes] = []
    for name, value in form._entries:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"'
        if isinstance(value, File):
            head += f'; filename="{_quote(value.name)}"\r\n'
            head += f"Content-Type: {value.content_type or 'application/octet-stream'}\r\n\r\n"
            out += [head.encode("utf-8"), value._data, b"\r\n"]
        else:
            text = _LINE_ENDS.sub("\r\n", value)
            out += [(head + "\r\n\r\n").encode("utf-8"), text.encode("utf-8"), b"\r\n"]
    out.append(f"--{boundary}--\r\n".encode("ascii"))
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


_UNRECOGNIZED = (
    "Unrecognized Content-Type header value. FormData can only parse the following MIME "
    "types: multipart/form-data, application/x-www-form-urlencoded"
)


def parse_form(body: builtins.bytes, content_type: str | None) -> FormData:
    """The fields of a ``multipart/form-data`` or urlencoded body (``await form_data()``)."""
    kind, options = parse_options_header(content_type or "")
    if kind == b"application/x-www-form-urlencoded":
        form = FormData()
        for key, value in urllib.parse.parse_qsl(body.decode("utf-8", "replace"), True):
            form.append(key, value)
        return form
    if kind != b"multipart/form-data":
        raise DurableObjectTypeError(_UNRECOGNIZED)
    boundary = options.get(b"boundary")
    if not boundary:
        raise DurableObjectTypeError("multipart/form-data body without a boundary parameter")
    return _parse_multipart(body, boundary)


def _parse_multipart(body: builtins.bytes, boundary: builtins.bytes) -> FormData:
    form = FormData()
    headers: dict[builtins.bytes, builtins.bytes] = {}
    field = bytearray()
    value = bytearray()
    data = bytearray()
    finished = False

    def on_part_begin() -> None:
        headers.clear()
        data.clear()

    def on_header_field(chunk: builtins.bytes, start: int, end: int) -> None:
        field.extend(chunk[start:end])

    def on_header_value(chunk: builtins.bytes, start: int, end: int) -> None:
        value.extend(chunk[start:end])

    def on_header_end() -> None:
        headers[builtins.bytes(field).lower()] = builtins.bytes(value)
        field.clear()
        value.clear()

    def on_part_data(chunk: builtins.bytes, start: int, end: int) -> None:
        data.extend(chunk[start:end])

    def on_part_end() -> None:
        _, params = parse_options_header(headers.get(b"content-disposition", b""))
        name = params.get(b"name")
        if name is None:
            raise DurableObjectTypeError("a multipart/form-data part has no name")
        key = name.decode("utf-8", "replace")
        filename = params.get(b"filename")
        if filename is None:
            form.append(key, data.decode("utf-8", "replace"))
        else:
            ctype = headers.get(b"content-type", b"").decode("latin-1")
            part = File([builtins.bytes(data)], filename.decode("utf-8", "replace"), ctype)
            form.append(key, part)

    def on_end() -> None:
        nonlocal finished
        finished = True

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_end": on_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except DurableObjectTypeError:
        raise
    except Exception as exc:  # python_multipart's MultipartParseError and kin
        raise DurableObjectTypeError(f"malformed multipart/form-data body: {exc}") from exc
    if not finished:
        raise DurableObjectTypeError("malformed multipart/form-data body: it ends too early")
    return form
