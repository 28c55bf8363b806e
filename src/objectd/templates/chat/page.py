"""The chat page: plain HTML and a little JavaScript, served by the worker."""

HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>objectd chat</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 0; display: flex; height: 100vh; }
  main { flex: 1; display: flex; flex-direction: column; }
  aside { width: 12rem; border-left: 1px solid #ddd; padding: 0 1rem; background: #fafafa; }
  header { padding: .6rem 1rem; border-bottom: 1px solid #ddd; display: flex; gap: .5rem; }
  #log { flex: 1; overflow-y: auto; padding: .5rem 1rem; }
  #log p { margin: .2rem 0; } .who { font-weight: 600; } .meta { color: #888; }
  form#say { display: flex; gap: .5rem; padding: .6rem 1rem; border-top: 1px solid #ddd; }
  form#say input { flex: 1; } input, button { font: inherit; padding: .3rem .5rem; }
  #status { margin-left: auto; color: #888; }
</style>
</head>
<body>
<main>
  <header>
    <form id="join">
      <input id="room" placeholder="room" required maxlength="64">
      <input id="user" placeholder="your name" required maxlength="32">
      <button>Join</button>
    </form>
    <span id="status">not connected</span>
  </header>
  <div id="log"></div>
  <form id="say"><input id="text" autocomplete="off" maxlength="2000" disabled>
    <button disabled>Send</button></form>
</main>
<aside><h3>Online</h3><ul id="online"></ul></aside>
<script>
const $ = (id) => document.getElementById(id);
let socket = null, retry = 0, timer = null;
$("room").value = decodeURIComponent(location.pathname.split("/r/")[1] || "") || "lobby";
$("user").value = localStorage.getItem("chat-user") || "";

function line(parts) {
  const p = document.createElement("p");
  for (const [cls, text] of parts) {
    const span = document.createElement("span");
    span.className = cls; span.textContent = text; p.append(span);
  }
  const log = $("log"), atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.append(p);
  if (atEnd) log.scrollTop = log.scrollHeight;
}
function show(m) {
  const time = new Date(m.at).toLocaleTimeString();
  line([["meta", time + " "], ["who", m.user + ": "], ["", m.text]]);
}
function online(users) {
  $("online").replaceChildren(...users.map((u) => {
    const li = document.createElement("li"); li.textContent = u; return li;
  }));
}
function enable(on) {
  for (const el of $("say").elements) el.disabled = !on;
  $("status").textContent = on ? "connected" : "reconnecting...";
}
function connect() {
  const room = $("room").value.trim(), user = $("user").value.trim();
  if (!room || !user) return;
  localStorage.setItem("chat-user", user);
  history.replaceState(null, "", "/r/" + encodeURIComponent(room));
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const url = scheme + location.host + "/api/rooms/" + encodeURIComponent(room) +
    "/websocket?user=" + encodeURIComponent(user);
  const ws = socket = new WebSocket(url);
  ws.onopen = () => {
    retry = 0; enable(true); $("text").focus();
    clearInterval(timer);
    timer = setInterval(() => ws.send("ping"), 30000);  // answered by the runtime
  };
  ws.onmessage = (event) => {
    if (event.data === "pong") return;
    const m = JSON.parse(event.data);
    if (m.type === "history") { $("log").replaceChildren(); m.messages.forEach(show); }
    else if (m.type === "message") show(m);
    else if (m.type === "join" || m.type === "leave") {
      line([["meta", m.user + (m.type === "join" ? " joined" : " left")]]); online(m.online);
    } else if (m.type === "error") line([["meta", "error: " + m.error]]);
  };
  ws.onclose = () => {
    if (ws !== socket) return;  // replaced by a newer connection
    enable(false); clearInterval(timer);
    setTimeout(connect, Math.min(10000, 500 * 2 ** retry++));
  };
}
$("join").onsubmit = (e) => {
  e.preventDefault();
  if (socket) { const old = socket; socket = null; old.close(); }
  connect();
};
$("say").onsubmit = (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  if (text && socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ text })); $("text").value = "";
  }
};
if ($("user").value) connect();
</script>
</body>
</html>
"""
