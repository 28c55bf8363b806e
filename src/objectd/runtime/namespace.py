"""Namespaces (``env.COUNTER``) and stubs: how code reaches an object (spec §1, §2).

A stub call is delivered the moment it is made: ``stub.fetch(...)`` and
``stub.method(...)`` submit the event synchronously and return an awaitable, so
calls through one stub arrive in call order even when they are awaited later or
together.  A call whose arguments are refused (a value the codec cannot carry, over
32 MiB, a request that cannot be built) sends nothing and returns a
:class:`~objectd.runtime.refusal.Refused` that raises when awaited, never at call
time: in ``gather(stub.a(bad), stub.b())`` ``b`` is still delivered (issue 10 §2).
Arguments and results cross through the value codec (a deep copy, and the same
refusals as storage).  A call made from inside an object waits for that
object's output gate before it is delivered.  After a stub saw a reset, overload
or disconnect error it stays broken; a new stub works again (spec §2.4).
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any

from objectd import codec
from objectd.errors import (
    DurableObjectError,
    DurableObjectRangeError,
    DurableObjectTypeError,
    OverloadedError,
    RpcError,
)
from objectd.fetch import Request, Response, streamed_body
from objectd.ids import JURISDICTIONS, LOCATION_HINTS, DurableObjectId
from objectd.runtime.host import current_host
from objectd.runtime.objects import HANDLERS, DurableObject, find_handler
from objectd.runtime.refusal import Refused
from objectd.runtime.streaming import stream_from_object

if TYPE_CHECKING:
    from objectd.runtime.host import ObjectHost
    from objectd.runtime.registry import ObjectClass

__all__ = ["DurableObjectNamespace", "DurableObjectStub"]

MAX_RPC_BYTES = 32 * 1024 * 1024
_RESERVED = frozenset({"constructor", "dup", "connect", *HANDLERS, *HANDLERS.values()})
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def _snake(name: str) -> str:
    return _CAMEL.sub(lambda m: "_" + m.group(1).lower(), name)


class DurableObjectNamespace:
    """The binding of one Durable Object class (``env.COUNTER``)."""

    def __init__(self, object_class: ObjectClass, jurisdiction: str | None = None) -> None:
        self._class = object_class
        self._jurisdiction = jurisdiction

    def id_from_name(self, name: str) -> DurableObjectId:
        return self._class.minter.id_from_name(name, jurisdiction=self._jurisdiction)

    def new_unique_id(
        self, options: Mapping[str, Any] | None = None, /, *, jurisdiction: str | None = None
    ) -> DurableObjectId:
        if options is not None:
            jurisdiction = options.get("jurisdiction", jurisdiction)
        return self._class.minter.new_unique_id(jurisdiction=jurisdiction or self._jurisdiction)

    def id_from_string(self, value: str) -> DurableObjectId:
        return self._class.minter.id_from_string(value, jurisdiction=self._jurisdiction)

    def get(
        self,
        object_id: DurableObjectId,
        options: Mapping[str, Any] | None = None,
        /,
        *,
        location_hint: str | None = None,
        routing_mode: str | None = None,
    ) -> DurableObjectStub:
        """A stub for ``object_id``; nothing is created until the first call."""
        if not isinstance(object_id, DurableObjectId):
            raise DurableObjectTypeError(
                f"get() takes a DurableObjectId, got {type(object_id).__name__}; "
                "use id_from_name(), id_from_string() or new_unique_id()"
            )
        if options is not None:
            location_hint = options.get("locationHint", location_hint)
            routing_mode = options.get("routingMode", routing_mode)
        if routing_mode is not None and routing_mode != "primary-only":
            raise DurableObjectRangeError(f"unknown routingMode: {routing_mode}")
        if location_hint is not None and location_hint not in LOCATION_HINTS:
            raise DurableObjectRangeError(
                f"unknown locationHint: {location_hint!r}; allowed: {', '.join(LOCATION_HINTS)}"
            )
        if self._jurisdiction is not None and object_id.jurisdiction != self._jurisdiction:
            raise DurableObjectTypeError(
                "get called on jurisdictional subnamespace with an ID from a different jurisdiction"
            )
        return DurableObjectStub(self._class, object_id)

    def get_by_name(
        self, name: str, options: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> DurableObjectStub:
        """Exactly ``get(id_from_name(name), ...)``."""
        return self.get(self.id_from_name(name), options, **kwargs)

    def jurisdiction(self, jurisdiction: str | None) -> DurableObjectNamespace:
        """A sub-namespace whose ids are restricted to ``jurisdiction``."""
        if jurisdiction is not None and jurisdiction not in JURISDICTIONS:
            raise DurableObjectTypeError(
                f"unknown jurisdiction {jurisdiction!r}; allowed: {', '.join(JURISDICTIONS)}"
            )
        return DurableObjectNamespace(self._class, jurisdiction)

    idFromName = id_from_name
    newUniqueId = new_unique_id
    idFromString = id_from_string
    getByName = get_by_name


class DurableObjectStub:
    """A client for one object. Any public attribute is an RPC method."""

    def __init__(self, object_class: ObjectClass, object_id: DurableObjectId) -> None:
        self._class = object_class
        self.id = object_id
        self.name = object_id.name
        self._broken: DurableObjectError | None = None

    def fetch(
        self, input: str | Request, init: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> PendingCall | Refused[Response]:
        """Send an HTTP-style request to the object's ``fetch`` handler.

        A request that cannot be built is refused when awaited, and nothing is sent.
        """
        try:
            if isinstance(input, Request) and init is None and not kwargs:
                request = Request(input)  # the object gets its own copy
            else:
                fields = {**(init or {}), **kwargs}
                request = Request(input, **fields)
        except (DurableObjectError, TypeError, ValueError) as exc:  # TypeError: unknown init
            return Refused(exc, "stub.fetch()")

        async def deliver(instance: Any) -> Response:
            handler = find_handler(instance, "fetch")
            if handler is None:
                raise DurableObjectTypeError(
                    f"Durable Object class {type(instance).__name__} has no fetch() handler"
                )
            response = handler(request)
            if inspect.isawaitable(response):
                response = await response
            if not isinstance(response, Response):
                raise DurableObjectTypeError(
                    f"fetch() handler of {type(instance).__name__} returned "
                    f"{type(response).__name__}, expected a Response"
                )
            if streamed_body(response) is None:
                return response
            host = current_host.get()
            assert host is not None  # set by the event that runs this
            return stream_from_object(response, host)  # a streamed body stays the object's

        return self._submit(deliver, decode=False)

    def __getattr__(self, name: str) -> RpcMethod:
        if name.startswith("__"):
            raise AttributeError(name)
        return RpcMethod(self, name)

    def _call(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> PendingCall | Refused[Any]:
        try:
            payload = codec.encode([list(args), kwargs])
            _check_size(len(payload))
        except DurableObjectError as exc:  # refused when awaited; nothing is sent
            return Refused(exc, f"stub.{name}()")

        async def deliver(instance: Any) -> bytes:
            method = _resolve(instance, name)
            call_args, call_kwargs = codec.decode(payload)
            result = method(*call_args, **call_kwargs)
            if inspect.isawaitable(result):
                result = await result
            encoded = codec.encode(result)
            _check_size(len(encoded))
            return encoded

        return self._submit(deliver, decode=True)

    def _submit(self, deliver: Any, *, decode: bool) -> PendingCall:
        if self._broken is not None:
            return PendingCall(None, self, decode, self._broken)
        caller = current_host.get()
        after = None
        if caller is not None and caller.storage is not None:
            after = caller.storage.output_gate_batch()
        try:
            host: ObjectHost = self._class.host(self.id)
            task = host.submit(deliver, after=after)
        except OverloadedError as exc:
            self._broken = exc  # spec §2.4: a stub that saw overload stays failed
            return PendingCall(None, self, decode, exc)
        except DurableObjectError as exc:  # the project is closed (ObjectClass.close)
            return PendingCall(None, self, decode, exc)
        return PendingCall(task, self, decode, None)

    def __repr__(self) -> str:
        return f"<DurableObjectStub {self._class.name} {self.id}>"


class RpcMethod:
    """``stub.increment``: calling it delivers the call at once and returns an awaitable."""

    __slots__ = ("_name", "_stub")

    def __init__(self, stub: DurableObjectStub, name: str) -> None:
        self._stub = stub
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> PendingCall | Refused[Any]:
        return self._stub._call(self._name, args, kwargs)


class PendingCall:
    """The awaitable result of a stub call (Cloudflare's RpcPromise)."""

    __slots__ = ("_decode", "_error", "_stub", "_task")

    def __init__(
        self,
        task: asyncio.Task[Any] | None,
        stub: DurableObjectStub,
        decode: bool,
        error: DurableObjectError | None,
    ) -> None:
        self._task = task
        self._stub = stub
        self._decode = decode
        self._error = error

    def __await__(self) -> Generator[Any, None, Any]:
        return self._result().__await__()

    async def _result(self) -> Any:
        if self._error is not None:
            raise self._error
        task = self._task
        assert task is not None
        if not task.done():
            # The caller waits on a future of its own, so the event runs to completion even
            # if this caller goes away (what asyncio.shield does, with less machinery).
            waiter: asyncio.Future[None] = task.get_loop().create_future()
            task.add_done_callback(lambda _: _wake(waiter))
            await waiter
        try:
            value = task.result()
        except DurableObjectError as exc:
            if exc.retryable or exc.overloaded or exc.durable_object_reset:
                self._stub._broken = exc
            raise
        caller = current_host.get()
        if caller is not None:
            await caller.gate.wait_open()
        return codec.decode(value) if self._decode else value


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():  # a caller that went away cancelled its waiter
        waiter.set_result(None)


def _check_size(size: int) -> None:
    if size > MAX_RPC_BYTES:
        raise DurableObjectError(
            "Serialized RPC arguments or return values are limited to 32MiB, "
            f"but the size of this value was: {size} bytes."
        )


def _resolve(instance: Any, name: str) -> Any:
    """The bound method ``name`` (or its snake_case spelling) callable over RPC."""
    if name in _RESERVED:
        raise RpcError(f"'{name}' is a reserved method and cannot be called over RPC.")
    cls = type(instance)
    if not isinstance(instance, DurableObject):
        raise RpcError(
            "The receiving Durable Object does not support RPC, because its class was not "
            "declared with `extends DurableObject`. In Python, subclass "
            "objectd.DurableObject (or workers.DurableObject)."
        )
    for candidate in dict.fromkeys((name, _snake(name))):
        if candidate.startswith("_"):
            continue
        for klass in cls.__mro__:
            # The base's own members are never RPC methods; mixins listed after it
            # (``class X(DurableObject, Mixin)``) contribute theirs, as in JS classes.
            if klass is DurableObject or klass is object:
                continue
            if candidate in klass.__dict__:
                member = klass.__dict__[candidate]
                bound = getattr(instance, candidate)
                if not callable(bound) or isinstance(member, property):
                    raise RpcError(f'"{name}" is not a function.')
                return bound
    raise RpcError(f'The RPC receiver does not implement the method "{name}".')
