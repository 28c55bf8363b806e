"""The live board page: plain HTML and a little JavaScript, served by the worker."""

HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>objectd live board</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; }
  #text { white-space: pre-wrap; border: 1px solid #ddd; padding: 1rem; min-height: 3rem; }
  #status { color: #888; } textarea { width: 100%; font: inherit; }
</style>
</head>
<body>
<h1>Board <span id="name"></span></h1>
<p id="status">connecting…</p>
<div id="text"></div>
<form id="edit">
  <textarea id="input" rows="4" maxlength="2000" placeholder="new text"></textarea>
  <button>Publish</button>
</form>
<script>
const board = location.pathname.startsWith("/b/")
  ? decodeURIComponent(location.pathname.slice(3)) : "main";
document.getElementById("name").textContent = board;
const api = "/api/boards/" + encodeURIComponent(board);
const status = document.getElementById("status");
// EventSource reconnects by itself and sends Last-Event-ID: the board replays the rest.
const events = new EventSource(api + "/events");
events.onopen = () => { status.textContent = "live"; };
events.onerror = () => { status.textContent = "reconnecting…"; };
events.onmessage = (event) => {
  const change = JSON.parse(event.data);
  document.getElementById("text").textContent = change.text;
  status.textContent = "live, version " + change.version;
};
document.getElementById("edit").onsubmit = async (e) => {
  e.preventDefault();
  await fetch(api, {method: "POST", body: document.getElementById("input").value});
};
</script>
</body>
</html>
"""
