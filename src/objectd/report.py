"""The error report: one stack from the caller's await down to the raise inside the object.

An exception raised inside a Durable Object reaches its caller as a copy
(:func:`objectd.errors.as_remote`), raised again at the caller's ``await stub...``.
Python's traceback of that copy ends at the stub, so the frames that matter most, the
user's code inside the object, would be lost.  ``as_remote`` therefore :func:`capture`\\ s
the original exception first and keeps the result on the copy (``remote_trace``);
:func:`format_report` stitches the caller's frames and the object's into one stack::

    Traceback (most recent call last):
      … 3 objectd frames hidden (--log-level debug shows them)
      File "worker.py", line 21, in fetch
        return await stub.fetch(request)
      ↳ inside Durable Object Thing "x" (4 objectd frames hidden):
      File "worker.py", line 5, in ratio
        return a / b
    ZeroDivisionError: division by zero

A call through several objects shows one ``↳`` line per object.  objectd's own frames
(files of this package) are folded into ``…`` lines unless ``full`` is set, which
:func:`format_report` does when the ``objectd`` logger is at DEBUG (``--log-level
debug``).  Chained exceptions (``raise ... from``, errors raised while handling
another) and exception groups are shown as Python shows them.

What crosses a stub.  An :class:`ErrorTrace` holds plain values only: per frame its
file, line, function and source positions (:class:`traceback.FrameSummary`, without
locals), and the text of the exception line.  Frames and locals are never kept, so a
caller that holds on to an error does not keep the object's request or instance
alive.  Capturing walks the traceback once and formats nothing but the exception
line; source lines are read (through :mod:`linecache`) only when a report is
rendered, which in-process is the same process.  The value codec never carries a trace:
an exception stored or returned over RPC keeps its type and message only.  A transport
between processes will send the trace's values (source lines looked up on the object's
side), not frames.
"""

from __future__ import annotations

import itertools
import linecache
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from traceback import FrameSummary, StackSummary, format_exception_only
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # objectd.ids imports objectd.errors, which imports this module
    from objectd.ids import DurableObjectId

__all__ = ["ErrorTrace", "capture", "format_report", "object_label"]

# Files of this package: their frames are objectd's own, folded away unless ``full``.
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_HINT = "--log-level debug shows them"
_CAUSE = "The above exception was the direct cause of the following exception:"
_CONTEXT = "During handling of the above exception, another exception occurred:"
_MAX_CHAIN = 32  # chained exceptions shown at most (a chain is rarely more than 2)


@dataclass(frozen=True, slots=True, eq=False)
class ErrorTrace:
    """One exception as its report shows it: frames and text, no live objects.

    ``where`` names the object whose code raised it (set by ``as_remote``); ``origin``
    is the trace an error that came out of another object carries from there;
    ``cause`` and ``context`` are the chained exceptions Python would print first.
    """

    frames: tuple[FrameSummary, ...]
    summary: tuple[str, ...]  # the exception line(s): "ZeroDivisionError: division by zero"
    where: str | None = None
    origin: ErrorTrace | None = None
    cause: ErrorTrace | None = None
    context: ErrorTrace | None = None
    exceptions: tuple[ErrorTrace, ...] = field(default=())  # of an exception group


def object_label(class_name: str, object_id: DurableObjectId) -> str:
    """How a report names an object: by the name its id was derived from, if known."""
    if object_id.name is not None:
        return f'Durable Object {class_name} "{object_id.name}"'
    return f"Durable Object {class_name} {object_id}"


def capture(exc: BaseException, *, where: str | None = None) -> ErrorTrace:
    """The trace of ``exc`` (and of what it chains to), cheap enough for every error."""
    return _capture(exc, where, set())


def _capture(exc: BaseException, where: str | None, seen: set[int]) -> ErrorTrace:
    seen.add(id(exc))
    context = None if exc.__suppress_context__ else exc.__context__
    group = exc.exceptions if isinstance(exc, BaseExceptionGroup) else ()
    return ErrorTrace(
        frames=tuple(_extract(exc.__traceback__)),
        summary=tuple(format_exception_only(exc)),
        where=where,
        origin=getattr(exc, "remote_trace", None),
        cause=_chained(exc.__cause__, seen),
        context=_chained(context, seen),
        exceptions=tuple(trace for e in group if (trace := _chained(e, seen)) is not None),
    )


def _chained(exc: BaseException | None, seen: set[int]) -> ErrorTrace | None:
    """The trace of a chained exception not seen yet (chains can be cycles)."""
    if exc is None or id(exc) in seen or len(seen) >= _MAX_CHAIN:
        return None
    return _capture(exc, None, seen)


def _extract(tb: TracebackType | None) -> Iterator[FrameSummary]:
    """Frames of ``tb``, outermost first, with the column positions Python shows."""
    while tb is not None:
        frame = tb.tb_frame
        code = frame.f_code
        lineno, end_lineno, colno, end_colno = _position(tb)
        # Registers a loader for code without a file on disk; reads nothing now.
        linecache.lazycache(code.co_filename, frame.f_globals)
        yield FrameSummary(
            code.co_filename,
            tb.tb_lineno if lineno is None else lineno,
            code.co_name,
            lookup_line=False,
            end_lineno=end_lineno,
            colno=colno,
            end_colno=end_colno,
        )
        tb = tb.tb_next


def _position(tb: TracebackType) -> tuple[int | None, int | None, int | None, int | None]:
    if tb.tb_lasti < 0:
        return None, None, None, None
    positions = tb.tb_frame.f_code.co_positions()
    found = next(itertools.islice(positions, tb.tb_lasti // 2, None), None)
    return found if found is not None else (None, None, None, None)


# -- rendering -----------------------------------------------------------------------------


def format_report(error: BaseException | ErrorTrace, *, full: bool | None = None) -> str:
    """The report of ``error``, ending with a newline.

    ``full``: show objectd's own frames too; by default when the ``objectd`` logger
    is enabled for DEBUG (``--log-level debug``).
    """
    if full is None:
        full = logging.getLogger("objectd").isEnabledFor(logging.DEBUG)
    trace = error if isinstance(error, ErrorTrace) else capture(error)
    lines: list[str] = []
    _Renderer(full).render(trace, lines, "")
    return "".join(lines)


class _Renderer:
    def __init__(self, full: bool) -> None:
        self.full = full
        self.hinted = False  # the first line that hides frames says how to see them

    def render(self, trace: ErrorTrace, out: list[str], margin: str) -> None:
        # A remote error's own frames end at the stub; its origin goes on from there.
        path = [trace]
        while (last := path[-1]).origin is not None and len(path) < _MAX_CHAIN:
            path.append(last.origin)
        for link in reversed(path):  # chained exceptions first, as Python prints them
            for chained, heading in ((link.cause, _CAUSE), (link.context, _CONTEXT)):
                if chained is not None:
                    self.render(chained, out, margin)
                    out.append(f"{margin}\n{margin}{heading}\n{margin}\n")
                    break
        inner = path[-1]
        if any(link.frames for link in path) or len(path) > 1:
            heading = "Exception Group Traceback" if inner.exceptions else "Traceback"
            out.append(f"{margin}{heading} (most recent call last):\n")
            self._stack(path, out, margin)
        out.extend(margin + line for text in inner.summary for line in text.splitlines(True))
        for number, sub in enumerate(inner.exceptions, 1):
            out.append(f"{margin}+-- {number} of {len(inner.exceptions)} --\n")
            self.render(sub, out, margin + "| ")
        if inner.exceptions:
            out.append(f"{margin}+--\n")

    def _stack(self, path: list[ErrorTrace], out: list[str], margin: str) -> None:
        hidden = 0
        boundary: str | None = None  # an object's heading, waiting for its hidden count
        for index, link in enumerate(path):
            if index:
                boundary = link.where or "a Durable Object"
            shown: list[FrameSummary] = []
            for frame in link.frames:
                if not self.full and _internal(frame):
                    hidden += 1
                    continue
                if boundary is not None or hidden:
                    self._flush(shown, out, margin)
                    shown = []
                    out.append(self._fold(boundary, hidden, margin))
                    boundary, hidden = None, 0
                shown.append(frame)
            self._flush(shown, out, margin)
        if boundary is not None or hidden:
            out.append(self._fold(boundary, hidden, margin))

    def _fold(self, boundary: str | None, hidden: int, margin: str) -> str:
        note = ""
        if hidden:
            note = f"{hidden} objectd frame{'s' if hidden != 1 else ''} hidden"
            if not self.hinted:
                note += f"; {_HINT}" if boundary is not None else f" ({_HINT})"
                self.hinted = True
        if boundary is None:
            return f"{margin}  … {note}\n"
        return f"{margin}  ↳ inside {boundary}{f' ({note})' if note else ''}:\n"

    @staticmethod
    def _flush(frames: list[FrameSummary], out: list[str], margin: str) -> None:
        # StackSummary.format shows carets and counts repeated frames (deep recursion).
        for text in StackSummary.from_list(frames).format():
            out.extend(margin + line for line in text.splitlines(True))


def _internal(frame: FrameSummary) -> bool:
    return os.path.abspath(frame.filename).startswith(_PACKAGE)
