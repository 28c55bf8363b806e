"""A FastAPI app that uses Durable Objects without being a Worker.

The objects live in ``objects/`` (a wrangler project with classes and bindings only);
``objectd.Runtime`` loads them for the app's lifespan, and the routes call them through
``runtime.env``::

    uvicorn app:app --app-dir examples/fastapi     # data in examples/fastapi/objects/.objectd

* ``POST /counters/{name}``: add one to the counter ``name``; ``GET`` reads it.
* ``GET /rooms/{name}/messages``: what was said in the room.
* ``WS /rooms/{name}/ws``: the room's WebSocket, relayed to its ``Room`` object.

``EXAMPLE_DATA_DIR`` chooses another data folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI, WebSocket

import objectd

runtime = objectd.Runtime(
    Path(__file__).parent / "objects", data_dir=os.environ.get("EXAMPLE_DATA_DIR") or None
)
app = FastAPI(lifespan=runtime.lifespan)


@app.post("/counters/{name}")
async def increment(name: str) -> dict[str, object]:
    counter = runtime.env.COUNTERS.get_by_name(name)
    return {"name": name, "value": await counter.increment()}


@app.get("/counters/{name}")
async def read(name: str) -> dict[str, object]:
    counter = runtime.env.COUNTERS.get_by_name(name)
    return {"name": name, "value": await counter.value()}


@app.get("/rooms/{name}/messages")
async def messages(name: str) -> list[str]:
    return await runtime.env.ROOMS.get_by_name(name).history()


@app.websocket("/rooms/{name}/ws")
async def room_socket(websocket: WebSocket, name: str) -> None:
    # The room's fetch() answers the upgrade; the connection is relayed until it ends.
    await runtime.connect_websocket(runtime.env.ROOMS.get_by_name(name), websocket)
