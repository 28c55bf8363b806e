"""A FastAPI app whose routes use the Durable Objects in objects.py.

    uvicorn app:app          # data in .objectd/ (APP_DATA_DIR chooses another folder)

``objectd.Runtime`` loads the objects for the app's lifespan; ``runtime.env`` holds the
bindings of wrangler.toml.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI, WebSocket

import objectd

runtime = objectd.Runtime(Path(__file__).parent, data_dir=os.environ.get("APP_DATA_DIR") or None)
app = FastAPI(lifespan=runtime.lifespan)
app.mount("/worker", runtime.asgi)  # the Worker's own fetch (objects.py's Default)


@app.post("/counters/{name}")
async def increment(name: str) -> dict[str, object]:
    return {"name": name, "value": await runtime.env.COUNTERS.get_by_name(name).increment()}


@app.get("/counters/{name}")
async def read(name: str) -> dict[str, object]:
    return {"name": name, "value": await runtime.env.COUNTERS.get_by_name(name).value()}


@app.websocket("/rooms/{name}/ws")
async def room(websocket: WebSocket, name: str) -> None:
    await runtime.connect_websocket(runtime.env.ROOMS.get_by_name(name), websocket)
