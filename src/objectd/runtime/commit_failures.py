"""What the caller of a write sees when its object's implicit commit fails (spec §5.9, §6).

A failed COMMIT resets the object: the transaction is rolled back, held outputs are
dropped, and every call waiting on the batch gets an :class:`ObjectResetError`.  Its
message says why.  A constraint still violated at COMMIT (a foreign key deferred with
``PRAGMA defer_foreign_keys``) is the application's doing, and Cloudflare says so in
its own words (workerd ``ActorSqlite``, checklist 113); anything else (a full disk, an
I/O error) is the storage's failure.
"""

from __future__ import annotations

import sqlite3

from objectd.errors import ObjectResetError, SqlError

__all__ = ["CONSTRAINTS_VIOLATED", "commit_failure"]

CONSTRAINTS_VIOLATED = (
    "Durable Object was reset and rolled back to its last known good state because the "
    "application left the database in a state where constraints were violated: "
)


def commit_failure(error: BaseException) -> ObjectResetError:
    """The reset error for a commit that raised ``error`` (chained to it)."""
    violation = _constraint_violation(error)
    if violation is not None:
        failed = ObjectResetError(CONSTRAINTS_VIOLATED + violation)
    else:
        failed = ObjectResetError(f"Durable Object storage failed to commit a write: {error}")
    failed.__cause__ = error
    return failed


def _constraint_violation(error: BaseException) -> str | None:
    """SQLite's text for a constraint violation (``<message>: SQLITE_CONSTRAINT``), if
    ``error`` is one: raw from sqlite3, or already translated to a :class:`SqlError`."""
    seen: BaseException | None = error
    for _ in range(8):  # the error and what it was raised from
        if seen is None:
            break
        if isinstance(seen, SqlError) and seen.code == "SQLITE_CONSTRAINT":
            return str(seen)
        if isinstance(seen, sqlite3.IntegrityError):
            return f"{seen}: SQLITE_CONSTRAINT"
        seen = seen.__cause__
    return None
