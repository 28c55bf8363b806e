"""objectd: a self-hostable Durable Objects runtime for Python.

The public API; everything else is internal.  Each name keeps Cloudflare's noun,
and camelCase aliases of methods live on the classes themselves.

``Runtime`` (objectd inside another ASGI app or asyncio program) is imported on first
use: it brings the HTTP front (uvicorn), which code that only defines objects does not
need.
"""

from typing import TYPE_CHECKING, Any

from objectd.errors import (
    ConfigError,
    ConnectionLostError,
    DataFolderInUseError,
    DurableObjectAbort,
    DurableObjectError,
    DurableObjectRangeError,
    DurableObjectTypeError,
    InvalidIdError,
    MigrationError,
    ObjectResetError,
    OverloadedError,
    RemoteError,
    RpcError,
    SerializationError,
    SqlError,
    StorageError,
)
from objectd.fetch import Headers, Request, Response
from objectd.forms import Blob, File, FormData
from objectd.ids import DurableObjectId
from objectd.runtime.alarm_ops import AlarmInfo
from objectd.runtime.committer import Durability
from objectd.runtime.hibernation import WebSocketRequestResponsePair
from objectd.runtime.namespace import DurableObjectNamespace, DurableObjectStub
from objectd.runtime.objects import DurableObject, ExecutionContext, WorkerEntrypoint
from objectd.runtime.outbound import fetch
from objectd.runtime.state import DurableObjectState
from objectd.runtime.storage_api import (
    DurableObjectStorage,
    DurableObjectTransaction,
    SyncKvStorage,
)
from objectd.runtime.websockets import WebSocket, WebSocketPair
from objectd.storage.sql import SqlStorage, SqlStorageCursor

if TYPE_CHECKING:
    from objectd.asgi.embed import Runtime

__version__ = "0.1.0"

__all__ = [
    "AlarmInfo",
    "Blob",
    "ConfigError",
    "ConnectionLostError",
    "DataFolderInUseError",
    "Durability",
    "DurableObject",
    "DurableObjectAbort",
    "DurableObjectError",
    "DurableObjectId",
    "DurableObjectNamespace",
    "DurableObjectRangeError",
    "DurableObjectState",
    "DurableObjectStorage",
    "DurableObjectStub",
    "DurableObjectTransaction",
    "DurableObjectTypeError",
    "ExecutionContext",
    "File",
    "FormData",
    "Headers",
    "InvalidIdError",
    "MigrationError",
    "ObjectResetError",
    "OverloadedError",
    "RemoteError",
    "Request",
    "Response",
    "RpcError",
    "Runtime",
    "SerializationError",
    "SqlError",
    "SqlStorage",
    "SqlStorageCursor",
    "StorageError",
    "SyncKvStorage",
    "WebSocket",
    "WebSocketPair",
    "WebSocketRequestResponsePair",
    "WorkerEntrypoint",
    "fetch",
]


def __getattr__(name: str) -> Any:
    if name == "Runtime":
        from objectd.asgi.embed import Runtime

        return Runtime
    raise AttributeError(f"module 'objectd' has no attribute {name!r}")
