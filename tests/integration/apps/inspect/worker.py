"""Objects to look inside (tests/integration/test_inspect*.py): KV pairs, a SQL table,
an alarm and hibernatable WebSockets with tags, on the object named by ``?name=``."""

from urllib.parse import parse_qs, urlparse

from workers import DurableObject, Response, WebSocketPair, WorkerEntrypoint


class Notes(DurableObject):
    async def fetch(self, request):
        url = urlparse(request.url)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        sql = self.ctx.storage.sql
        if url.path == "/put":
            await self.ctx.storage.put(query["key"], {"text": query["value"], "n": [1, 2]})
            sql.exec("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)")
            sql.exec("INSERT INTO notes (body) VALUES (?)", query["value"])
            return Response("ok")
        if url.path == "/alarm":
            await self.ctx.storage.setAlarm(int(query["ms"]))
            return Response("ok")
        if url.path == "/count":
            return Response(str(len(sql.exec("SELECT * FROM notes").toArray())))
        if url.path == "/ws":
            client, server = WebSocketPair.new().object_values()
            self.ctx.acceptWebSocket(server, [query["tag"]])
            return Response(None, status=101, webSocket=client)
        return Response("not found", status=404)

    async def alarm(self):
        pass

    async def webSocketMessage(self, ws, message):
        ws.send(message)


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        name = parse_qs(urlparse(request.url).query).get("name", ["main"])[0]
        return await self.env.NOTES.getByName(name).fetch(request)
