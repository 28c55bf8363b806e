"""Blob, File and FormData, and form bodies of Request and Response (spec §14)."""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
from typing import Any

import httpx
import pytest

from objectd.errors import DurableObjectTypeError
from objectd.fetch import Request, Response
from objectd.forms import Blob, BlobEnding, File, FormData


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_blob_parts_type_and_slices() -> None:
    blob = Blob(["héllo ", b"wor", bytearray(b"l"), memoryview(b"d")], content_type="Text/Plain")
    assert blob.size == len("héllo world".encode())
    assert blob.content_type == blob.type == "text/plain"  # lower-cased, as in browsers
    assert run(blob.text()) == "héllo world"
    assert run(blob.bytes()) == "héllo world".encode()
    assert run(blob.slice(-5).text()) == "world"
    assert run(blob.slice(0, 1, "x/y").bytes()) == b"h"
    assert blob.slice(0, 1, "x/y").content_type == "x/y"
    assert Blob("one str").size == 7  # a single part need not be in a list
    assert Blob(blob).content_type == "text/plain"  # a blob alone keeps its type
    assert Blob([blob]).content_type == ""
    assert Blob([], content_type="caf\u00e9").content_type == ""  # not printable ASCII
    assert run(Blob(["a\nb"], endings=BlobEnding.NATIVE).text()) == "a\nb"  # on POSIX
    assert run(Blob(["a\r\nb"], endings="native").text()) == "a\nb"
    with pytest.raises(DurableObjectTypeError, match="Blob part must be str, bytes-like"):
        Blob([1])
    with pytest.raises(DurableObjectTypeError, match="unknown Blob endings 'crlf'"):
        Blob([], endings="crlf")


def test_file_name_and_last_modified() -> None:
    file = File([b"data"], "notes.txt", content_type="text/plain", last_modified=1234)
    assert (file.name, file.last_modified, file.lastModified) == ("notes.txt", 1234, 1234)
    assert isinstance(file, Blob) and file.size == 4
    copy = File(file, "copy.txt")
    assert (copy.content_type, copy.last_modified) == ("text/plain", 1234)
    assert File([], "now.bin").last_modified > 1_700_000_000_000
    with pytest.raises(DurableObjectTypeError, match="File name must be a str"):
        File([], None)  # type: ignore[arg-type]


def test_form_data_is_an_ordered_multi_dict() -> None:
    form = FormData({"a": "1", "file": Blob([b"x"])})
    form.append("a", "2")
    form.append("upload", Blob([b"abc"], content_type="image/png"), "pic.png")
    assert form["a"] == "1"  # the first value
    assert form.get_all("a") == form.getAll("a") == ["1", "2"]
    assert form["missing"] is None  # as Python Workers returns
    assert list(form.keys()) == ["a", "file", "a", "upload"]
    assert len(form) == 4
    blob_entry = form["file"]
    assert isinstance(blob_entry, File) and blob_entry.name == "blob"  # a Blob becomes a File
    picture = form["upload"]
    assert isinstance(picture, File) and picture.name == "pic.png"
    assert picture.content_type == "image/png"
    form["a"] = "only"  # set: one value, where the first was
    assert next(iter(form.items())) == ("a", "only") and form.get_all("a") == ["only"]
    assert "a" in form and form.has("a")
    del form["a"]
    assert "a" not in form
    form.delete("nothing")  # deleting what is absent is fine
    assert FormData(form).get_all("upload") == [picture]
    with pytest.raises(TypeError, match="Expected single item"):
        form["x"] = ["1", "2"]  # type: ignore[assignment]
    with pytest.raises(DurableObjectTypeError, match="FormData value must be a str, Blob"):
        form.append("n", 5)  # type: ignore[arg-type]
    with pytest.raises(DurableObjectTypeError, match="Expected form_data to be a dict"):
        FormData([("a", "b")])  # type: ignore[arg-type]


def _parse_with_email(body: bytes, content_type: str) -> list[tuple[str, str | None, bytes]]:
    """An independent reading of a multipart body: the standard library's MIME parser."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    return [
        (part.get_param("name", header="content-disposition"), part.get_filename(),
         part.get_payload(decode=True))
        for part in message.iter_parts()
    ]  # fmt: skip


def test_a_form_data_body_is_multipart() -> None:
    form = FormData()
    form.append("name", "Ada\nLovelace")
    form.append("cv", File([b"\x00\x01binary"], "cv.bin", content_type="application/pdf"))
    response = Response(form)
    content_type = response.headers["content-type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    assert _parse_with_email(response.body, content_type) == [
        ("name", None, b"Ada\r\nLovelace"),  # newlines in text fields are sent as CRLF
        ("cv", "cv.bin", b"\x00\x01binary"),
    ]
    back = run(response.form_data())
    assert back["name"] == "Ada\r\nLovelace"
    cv = back["cv"]
    assert isinstance(cv, File)
    assert (cv.name, cv.content_type, run(cv.bytes())) == (
        "cv.bin",
        "application/pdf",
        b"\x00\x01binary",
    )
    # A content type given explicitly is kept.
    assert Response(form, headers={"content-type": "x/y"}).headers["content-type"] == "x/y"


def test_a_blob_body_takes_its_type() -> None:
    response = Response(Blob(["<p>hi</p>"], content_type="text/html"))
    assert response.headers["content-type"] == "text/html"
    assert response.body == b"<p>hi</p>"
    assert "content-type" not in Response(Blob([b"raw"])).headers
    blob = run(
        Request("http://x/", method="POST", body=b"abc", headers={"content-type": "a/b"}).blob()
    )
    assert (run(blob.bytes()), blob.content_type) == (b"abc", "a/b")


def test_request_form_data_reads_what_a_real_client_sends() -> None:
    # httpx builds the multipart body: an encoder other than ours.
    sent = httpx.Request(
        "POST",
        "http://x/upload",
        data={"title": "Holiday", "tags": ["a", "b"]},
        files={"photo": ("beach.jpg", b"\xff\xd8jpeg", "image/jpeg")},
    )
    body = sent.read()
    request = Request(
        "http://x/upload", method="POST", body=body, headers=dict(sent.headers.items())
    )
    form = run(request.form_data())
    assert form["title"] == "Holiday"
    assert form.get_all("tags") == ["a", "b"]
    photo = form["photo"]
    assert isinstance(photo, File)
    assert (photo.name, photo.content_type, run(photo.bytes())) == (
        "beach.jpg", "image/jpeg", b"\xff\xd8jpeg",
    )  # fmt: skip
    urlencoded = Request(
        "http://x/",
        method="POST",
        body="a=1&b=two+words&a=3&empty=",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    form = run(urlencoded.formData())
    assert form.get_all("a") == ["1", "3"] and form["b"] == "two words" and form["empty"] == ""


def test_form_data_and_blob_of_a_streamed_body() -> None:
    """An upload still arriving is a streamed body: form_data() and blob() read it whole
    first (they read only the bytes already held, and saw an empty body)."""
    sent = httpx.Request("POST", "http://x/upload", files={"f": ("a.txt", b"hello", "text/plain")})
    body = sent.read()

    async def arriving() -> Any:
        for start in range(0, len(body), 7):
            yield body[start : start + 7]

    def streamed() -> Request:
        headers = dict(sent.headers.items())
        return Request("http://x/upload", method="POST", body=arriving(), headers=headers)

    form = run(streamed().form_data())
    assert run(form["f"].bytes()) == b"hello"
    blob = run(streamed().blob())
    assert run(blob.bytes()) == body and blob.content_type.startswith("multipart/form-data")


def test_bad_form_bodies_are_refused() -> None:
    plain = Request("http://x/", method="POST", body="hello")
    with pytest.raises(TypeError, match="FormData can only parse the following MIME types"):
        run(plain.form_data())
    no_boundary = Request(
        "http://x/", method="POST", body="x", headers={"content-type": "multipart/form-data"}
    )
    with pytest.raises(DurableObjectTypeError, match="without a boundary"):
        run(no_boundary.form_data())
    cut = Request(
        "http://x/",
        method="POST",
        body=b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nvalue',
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    with pytest.raises(DurableObjectTypeError, match="malformed multipart/form-data body"):
        run(cut.form_data())
