"""The chat example under the test kit: WebSockets through the Worker, in process."""

import asyncio
import json

import pytest

from objectd.testing import evict, list_durable_object_ids, run_in_durable_object

pytestmark = pytest.mark.objectd(project="..")


class Client:
    """One browser tab: the client end of the WebSocket the Worker answered with."""

    def __init__(self, ws):
        ws.accept()
        self.ws = ws
        self.messages = aiter(ws)

    async def receive(self):
        async with asyncio.timeout(5):  # a bound, not a timing: a missing message fails
            return json.loads(await anext(self.messages))

    def say(self, text):
        self.ws.send(json.dumps({"text": text}))


async def join(objectd_self, room, user):
    response = await objectd_self.fetch(
        f"https://example.com/api/rooms/{room}/websocket?user={user}",
        headers={"Upgrade": "websocket"},
    )
    assert response.status == 101
    return Client(response.web_socket)


async def test_the_page_is_served(objectd_self):
    response = await objectd_self.fetch("https://example.com/r/lobby")
    assert response.status == 200
    assert response.headers.get("content-type").startswith("text/html")


async def test_a_plain_request_to_the_socket_route_is_refused(objectd_self):
    response = await objectd_self.fetch("https://example.com/api/rooms/lobby/websocket?user=a")
    assert response.status == 426


async def test_messages_are_broadcast_and_stored(objectd_self, objectd_env):
    alice = await join(objectd_self, "lobby", "alice")
    assert await alice.receive() == {"type": "history", "messages": []}
    assert await alice.receive() == {"type": "join", "user": "alice", "online": ["alice"]}
    bob = await join(objectd_self, "lobby", "bob")
    assert (await bob.receive())["type"] == "history"
    joined = {"type": "join", "user": "bob", "online": ["alice", "bob"]}
    assert await alice.receive() == joined
    assert await bob.receive() == joined

    alice.say("hello")
    for client in (alice, bob):
        message = await client.receive()
        assert (message["type"], message["user"], message["text"]) == ("message", "alice", "hello")

    room = objectd_env.ROOMS.get_by_name("lobby")
    rows = await run_in_durable_object(
        room,
        lambda chat, state: state.storage.sql.exec("SELECT user, text FROM messages").to_array(),
    )
    assert rows == [{"user": "alice", "text": "hello"}]
    assert await list_durable_object_ids(objectd_env.ROOMS) == [room.id]


async def test_a_newcomer_gets_the_history(objectd_self):
    alice = await join(objectd_self, "lobby", "alice")
    await alice.receive(), await alice.receive()  # history, join
    alice.say("first")
    await alice.receive()
    carol = await join(objectd_self, "lobby", "carol")
    history = await carol.receive()
    assert [m["text"] for m in history["messages"]] == ["first"]


async def test_a_bad_message_gets_an_error_and_is_not_stored(objectd_self, objectd_env):
    alice = await join(objectd_self, "lobby", "alice")
    await alice.receive(), await alice.receive()
    alice.ws.send("not json")
    assert (await alice.receive())["type"] == "error"
    room = objectd_env.ROOMS.get_by_name("lobby")
    count = await run_in_durable_object(
        room, lambda chat, state: state.storage.sql.exec("SELECT count(*) AS n FROM messages").one()
    )
    assert count == {"n": 0}


async def test_leaving_is_announced(objectd_self):
    alice = await join(objectd_self, "lobby", "alice")
    bob = await join(objectd_self, "lobby", "bob")
    for _ in range(3):  # history, alice's join, bob's join
        await alice.receive()
    bob.ws.close(1000, "bye")
    assert await alice.receive() == {"type": "leave", "user": "bob", "online": ["alice"]}


async def test_an_evicted_room_keeps_its_sockets(objectd_self, objectd_env):
    alice = await join(objectd_self, "lobby", "alice")
    await alice.receive(), await alice.receive()
    room = objectd_env.ROOMS.get_by_name("lobby")
    before = await run_in_durable_object(room, lambda chat, state: chat)
    await evict(room)  # hibernated: the instance goes, the socket stays open
    alice.ws.send("ping")
    async with asyncio.timeout(5):
        assert await anext(alice.messages) == "pong"  # the room's auto-response
    alice.say("still here")
    message = await alice.receive()  # the message wakes a new instance of the room
    assert message["text"] == "still here"
    assert await run_in_durable_object(room, lambda chat, state: chat) is not before


async def test_an_idle_room_hibernates_on_the_clock(objectd_self, objectd_env, objectd_clock):
    alice = await join(objectd_self, "lobby", "alice")
    await alice.receive(), await alice.receive()
    room = objectd_env.ROOMS.get_by_name("lobby")
    before = await run_in_durable_object(room, lambda chat, state: chat)
    await objectd_clock.advance(30)  # idle past the 10 s timeout: evicted, socket kept
    alice.say("after a nap")
    assert (await alice.receive())["text"] == "after a nap"
    assert await run_in_durable_object(room, lambda chat, state: chat) is not before
