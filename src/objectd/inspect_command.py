"""``objectd inspect`` (L4, issue 14 §2): what a project's objects have stored, as tables
(rich) or JSON, read through :mod:`objectd.data_source`."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from objectd.data_source import common_options, open_source, script_folder

__all__ = ["inspect_command"]


@click.command("inspect")
@common_options
@click.option("--class", "class_name", help="List this class's objects.")
@click.option("--object", "object_ref", help="Dump one object (an id, or the name it came from).")
@click.option("--sql", help="Run a read-only SQL query against --object.")
@click.option("--search", help="With --class: ids starting with, or names containing, this.")
@click.option("--prefix", default="", help="With --object: only KV keys starting with this.")
@click.option("--after", help="With --object: KV keys after this one (the next page).")
@click.option("--alarms", is_flag=True, help="List the stored alarms, soonest first.")
@click.option("--due", is_flag=True, help="With --alarms: only those whose time has come.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def inspect_command(
    directory: Path,
    data_dir: Path | None,
    environment: str | None,
    admin_token: str | None,
    class_name: str | None,
    object_ref: str | None,
    sql: str | None,
    search: str | None,
    prefix: str,
    after: str | None,
    alarms: bool,
    due: bool,
    as_json: bool,
) -> None:
    """Show what DIRECTORY's objects have stored: classes and objects, one object's KV
    pairs and tables, a read-only query, or the alarms.

    Reads through the admin API of the server that holds the data when one runs, else
    from the files.
    """
    if object_ref is not None and class_name is None:
        raise click.UsageError("--object needs --class")
    if sql is not None and object_ref is None:
        raise click.UsageError("--sql needs --class and --object")
    folder = script_folder(directory.resolve(), data_dir, environment)
    console = Console(highlight=False)
    with open_source(folder, admin_token) as source:
        click.echo(f"objectd: reading {source.description}", err=True)
        show: Callable[[Console, dict[str, Any]], None]
        if alarms or due:
            result = source.get("alarms")
            if due:
                result["alarms"] = [a for a in result["alarms"] if a["due"]]
            show = _show_alarms
        elif sql is not None:
            assert class_name is not None
            assert object_ref is not None
            result = source.get("query", **{"class": class_name, "id": object_ref, "sql": sql})
            show = _show_query
        elif object_ref is not None:
            assert class_name is not None
            params = {"class": class_name, "id": object_ref}
            if prefix:
                params["kv_prefix"] = prefix
            if after is not None:
                params["kv_after"] = after
            result = source.get("object", **params)
            show = _show_object
        elif class_name is not None:
            params = {"class": class_name, **({"search": search} if search else {})}
            result = source.get("objects", **params)
            show = _show_objects
        else:
            summary = source.get("summary")
            result = {
                **summary,
                "classes": [
                    {**c, **source.get("objects", **{"class": c["class"]})}
                    for c in summary["classes"]
                ],
            }
            show = _show_summary
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        show(console, result)


# C0 and C1 control characters and DEL: stored data holding them (ESC sequences) could
# retitle the terminal, move the cursor or hide lines; shown as \x.. instead.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _safe(value: Any) -> Text:
    """``value`` for the terminal: Text (never read as rich markup), controls escaped."""
    text = "" if value is None else str(value)
    return Text(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text))


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=_safe(title), title_justify="left")
    for column in columns:
        table.add_column(_safe(column), overflow="fold")
    for row in rows:
        table.add_row(*(_safe(v) for v in row))
    return table


def _object_rows(objects: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [o["id"], o["name"], o["size"], o["last_write"], o["alarm"], o["sockets"]] for o in objects
    ]


_OBJECT_COLUMNS = ["id", "name", "bytes", "last write", "alarm", "sockets"]


def _show_summary(console: Console, result: dict[str, Any]) -> None:
    if not result["classes"]:
        console.print(Text(f"script {result['script']}: no classes"))
    for c in result["classes"]:
        title = f"{c['class']} ({c['backend']}): {len(c['objects'])} objects"
        console.print(_table(title, _OBJECT_COLUMNS, _object_rows(c["objects"])))


def _show_objects(console: Console, result: dict[str, Any]) -> None:
    title = f"{result['class']}: {len(result['objects'])} objects"
    console.print(_table(title, _OBJECT_COLUMNS, _object_rows(result["objects"])))
    if result["truncated"]:
        console.print(Text("(more objects than shown: narrow them with --search)"))


def _show_object(console: Console, item: dict[str, Any]) -> None:
    facts = [
        ["class", item["class"]],
        ["id", item["id"]],
        ["name", item["name"]],
        ["bytes", item["size"]],
        ["last write", item["last_write"]],
        ["alarm", item["alarm"]],
    ]
    console.print(_table("object", ["", ""], facts))
    kv_rows = [[kv["key"], kv["repr"], kv["size"]] for kv in item["kv"]]
    console.print(_table(f"KV: {len(kv_rows)} pairs", ["key", "value", "bytes"], kv_rows))
    if item["kv_truncated"] and item["kv"]:
        last = item["kv"][-1]["key"]
        console.print(Text(f"(more pairs: --after {json.dumps(last)} shows the next ones)"))
    for table in item["tables"]:
        title = f"table {table['name']}: {_counted(table)}"
        console.print(_table(title, table["columns"], table["rows"]))
    sockets = item.get("socket_list")
    if sockets:
        rows = [[s["state"], ", ".join(s["tags"])] for s in sockets]
        console.print(_table("live WebSockets", ["state", "tags"], rows))


def _counted(table: dict[str, Any]) -> str:
    """``3 rows``, and whether only some are shown; a table too slow to count says so."""
    count = table["count"]
    text = "? rows (too slow to count)" if count is None else f"{count} rows"
    if table.get("truncated"):
        text += f", the first {len(table['rows'])} shown"
    return text


def _show_query(console: Console, result: dict[str, Any]) -> None:
    console.print(_table(f"{len(result['rows'])} rows", result["columns"], result["rows"]))
    if result["truncated"]:
        console.print(Text("(more rows than shown)"))


def _show_alarms(console: Console, result: dict[str, Any]) -> None:
    rows = [
        [a["alarm"], "due" if a["due"] else "", a["class"], a["id"], a["name"]]
        for a in result["alarms"]
    ]
    if not rows:
        console.print(Text(f"no alarms (at {result['now']})"))
        return
    title = f"alarms at {result['now']}"
    console.print(_table(title, ["time", "", "class", "id", "name"], rows))
