"""Streamed bodies as values: ``Response(async_iterable)``, ``stream()`` (issue 10 §1)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import pytest

from objectd.errors import DurableObjectRangeError, DurableObjectTypeError
from objectd.fetch import Request, Response, streamed_body
from objectd.streams import BodyStream

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def chunks(*items: Any, log: list[str] | None = None) -> AsyncIterator[Any]:
    try:
        for item in items:
            yield item
    finally:
        if log is not None:
            log.append("closed")


async def collect(stream: BodyStream) -> list[bytes]:
    return [chunk async for chunk in stream]


def test_a_response_streams_str_and_bytes_chunks_as_bytes() -> None:
    response = Response(chunks("a", b"b", bytearray(b"c"), "é"))
    assert "content-type" not in response.headers  # no type is implied for a stream
    assert run(collect(response.stream())) == [b"a", b"b", b"c", "é".encode()]


def test_a_streamed_body_is_read_once() -> None:
    response = Response(chunks("a", "b"))
    assert streamed_body(response) is not None
    assert run(response.text()) == "ab"
    assert run(response.bytes()) == b"ab"  # kept as bytes once read whole
    assert streamed_body(response) is None and response.body == b"ab"
    iterated = Response(chunks("a"))
    stream = iterated.stream()
    assert run(collect(stream)) == [b"a"]
    with pytest.raises(DurableObjectTypeError, match="already been used"):
        run(iterated.text())
    with pytest.raises(DurableObjectTypeError, match="already been used"):
        run(collect(stream))


def test_an_unread_streams_body_is_the_stream_and_it_has_no_clone() -> None:
    """As the fetch API's ``body``: so ``Request(url, body=request.body)`` forwards it."""
    response = Response(chunks("a"))
    assert response.body is response.stream()
    with pytest.raises(DurableObjectTypeError, match="a streamed body is read once"):
        response.clone()
    forwarded = Request("http://x/", method="PUT", body=response.body)
    assert run(forwarded.text()) == "a"


def test_a_whole_body_streams_as_one_chunk() -> None:
    assert run(collect(Response("hi").stream())) == [b"hi"]
    assert run(collect(Response(None).stream())) == []


def test_bad_chunks_and_bad_bodies_are_refused_with_their_type() -> None:
    with pytest.raises(DurableObjectTypeError, match="chunks must be bytes or str, got int"):
        run(collect(Response(chunks(5)).stream()))
    with pytest.raises(DurableObjectTypeError, match="async iterable of chunks, got list"):
        Response(["a"])  # type: ignore[arg-type]
    with pytest.raises(DurableObjectTypeError, match="null body status"):
        Response(chunks("a"), status=204)
    with pytest.raises(DurableObjectTypeError, match="GET or HEAD"):
        Request("http://x/", body=chunks("a"))


def test_closing_a_stream_runs_the_generators_finally() -> None:
    log: list[str] = []

    async def main() -> None:
        stream = Response(chunks("a", "b", log=log)).stream()
        assert await anext(stream.__aiter__()) == b"a"
        await stream.aclose()

    run(main())
    assert log == ["closed"]


def test_reading_whole_past_a_limit_is_refused_and_closes_the_source() -> None:
    log: list[str] = []
    stream = BodyStream(chunks(b"12345", b"67890", log=log))
    with pytest.raises(DurableObjectRangeError, match="more than 8 bytes"):
        run(stream.read(limit=8))
    assert log == ["closed"]


def test_a_request_passes_its_stream_on_without_reading_it() -> None:
    original = Request("http://x/", method="POST", body=chunks("a", "b"))
    copy = Request(original, headers={"x": "1"})
    assert streamed_body(copy) is streamed_body(original)  # one stream, not a copy
    assert run(collect(copy.stream())) == [b"a", b"b"]
    with pytest.raises(DurableObjectTypeError, match="already been used"):
        run(original.bytes())


def test_reading_a_streamed_body_whole_is_bounded_like_a_request_body() -> None:
    """``await response.text()`` of an endless stream (an outbound fetch() of an event
    stream) used to grow without bound; past 100 MiB it is refused and the source closed.
    Every chunk is the same 1 MiB object, so the test itself holds 1 MiB."""
    mib = b"x" * (1 << 20)
    log: list[str] = []

    async def endless() -> AsyncIterator[bytes]:
        try:
            while True:
                yield mib
        finally:
            log.append("closed")

    for read in ("text", "bytes", "json", "blob"):
        log.clear()
        with pytest.raises(DurableObjectRangeError, match="more than 104857600 bytes"):
            run(getattr(Response(endless()), read)())
        assert log == ["closed"]
    exact = Response(chunks(*[mib] * 100))  # 100 MiB exactly is read
    assert len(run(exact.bytes())) == 100 << 20
