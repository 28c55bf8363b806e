"""objectd.runtime.migrations: migrations applied to the data folder (checklist 153-159)."""

from __future__ import annotations

import os
import sqlite3
import textwrap
import threading
from pathlib import Path

import pytest

from objectd.config import ProjectConfig, load_project
from objectd.errors import MigrationError
from objectd.ids import IdMinter
from objectd.runtime.migrations import METADATA_NAME, ClassState, apply_migrations
from objectd.storage.database import Backend

# --- helpers ----------------------------------------------------------------------------


def project(
    folder: Path, migrations: str = "", *, name: str = "app", bindings: tuple[str, ...] = ()
) -> ProjectConfig:
    """Write wrangler.toml + main.py into ``folder`` and load it.

    ``bindings`` are class names bound as ``<CLASS>_NS``; ``migrations`` is TOML text.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.py").write_text("")
    text = f'name = "{name}"\nmain = "main.py"\n'
    for class_name in bindings:
        text += f'[[durable_objects.bindings]]\nname = "{class_name.upper()}_NS"\n'
        text += f'class_name = "{class_name}"\n'
    (folder / "wrangler.toml").write_text(text + textwrap.dedent(migrations))
    return load_project(folder)


def exports(*names: str) -> dict[str, type]:
    return {name: type(name, (), {}) for name in names}


def add_object(state: ClassState, name: str = "x") -> str:
    """Create an object file (plus a WAL) for the id of ``name``; return the id string."""
    object_id = IdMinter(state.secret).id_from_name(name).to_string()
    state.directory.mkdir(parents=True, exist_ok=True)
    (state.directory / f"{object_id}.sqlite").write_bytes(b"object " + name.encode())
    (state.directory / f"{object_id}.sqlite-wal").write_bytes(b"wal")
    return object_id


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every folder (None) and file (its bytes) under ``root``."""
    if not root.exists():
        return {}
    return {
        str(path.relative_to(root)): None if path.is_dir() else path.read_bytes()
        for path in sorted(root.rglob("*"))
    }


def metadata(root: Path, script: str = "app") -> tuple[list[tuple[object, ...]], ...]:
    with sqlite3.connect(root / script / METADATA_NAME) as db:
        tags = db.execute("SELECT position, tag FROM migrations ORDER BY position").fetchall()
        classes = db.execute(
            "SELECT name, backend, state, tag, moved_to FROM classes ORDER BY name"
        ).fetchall()
    db.close()
    return tags, classes


def refused(config: ProjectConfig, exported: dict[str, type], root: Path, *needles: str) -> str:
    """Apply, expect a MigrationError containing ``needles``, check nothing changed."""
    before = snapshot(root)
    with pytest.raises(MigrationError) as info:
        apply_migrations(config, exported, root)
    message = str(info.value)
    for needle in needles:
        assert needle in message
    assert snapshot(root) == before
    return message


V1 = """
[[migrations]]
tag = "v1"
new_sqlite_classes = ["A"]
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "data"


# --- 153: bindings need a created class ------------------------------------------------------


def test_153_binding_without_create_migration_is_refused(tmp_path: Path, root: Path) -> None:
    config = project(tmp_path / "p", bindings=("A",))
    message = refused(
        config,
        exports("A"),
        root,
        str(config.config_path),
        "durable_objects.bindings[0] (A_NS)",
        "Cannot create binding for class 'A' because it is not currently configured to "
        "implement Durable Objects. [code: 10061]",
    )
    assert not root.exists()
    assert "new_sqlite_classes" in message


def test_153_binding_to_created_class_is_accepted(tmp_path: Path, root: Path) -> None:
    states = apply_migrations(project(tmp_path / "p", V1, bindings=("A",)), exports("A"), root)
    assert list(states) == ["A"]


def test_153_binding_to_another_script_is_not_checked_here(tmp_path: Path, root: Path) -> None:
    folder = tmp_path / "p"
    project(folder)
    (folder / "wrangler.toml").write_text(
        'name = "app"\nmain = "main.py"\n[[durable_objects.bindings]]\n'
        'name = "OTHER"\nclass_name = "Z"\nscript_name = "other"\n'
    )
    config = load_project(folder)
    assert apply_migrations(config, exports(), root) == {}


def test_153_binding_to_deleted_class_is_refused(tmp_path: Path, root: Path) -> None:
    apply_migrations(project(tmp_path / "p", V1), exports("A"), root)
    v2 = V1 + '[[migrations]]\ntag = "v2"\ndeleted_classes = ["A"]\n'
    apply_migrations(project(tmp_path / "p", v2), exports("A"), root)
    refused(project(tmp_path / "p", v2, bindings=("A",)), exports("A"), root, "[code: 10061]")


def test_bound_class_must_be_exported(tmp_path: Path, root: Path) -> None:
    apply_migrations(project(tmp_path / "p", V1), exports("A"), root)
    config = project(tmp_path / "p", V1, bindings=("A",))
    refused(config, exports(), root, "'A' is bound but not exported by main.py")


# --- 154: backends -------------------------------------------------------------------------


def test_154_new_sqlite_classes_and_new_classes_set_the_backend(tmp_path: Path, root: Path) -> None:
    config = project(
        tmp_path / "p",
        '[[migrations]]\ntag = "v1"\nnew_sqlite_classes = ["A"]\nnew_classes = ["B"]\n',
        bindings=("A", "B"),
    )
    states = apply_migrations(config, exports("A", "B"), root)
    assert states["A"].backend is Backend.SQLITE
    assert states["B"].backend is Backend.KV
    assert len(states["A"].secret) == len(states["B"].secret) == 32
    assert states["A"].secret != states["B"].secret
    assert states["A"].directory == root / "app" / "A"
    assert states["A"].directory.is_dir()
    assert states["B"].directory.is_dir()
    assert metadata(root) == (
        [(0, "v1")],
        [("A", "sqlite", "active", "v1", None), ("B", "kv", "active", "v1", None)],
    )


def test_154_backend_cannot_change_later(tmp_path: Path, root: Path) -> None:
    apply_migrations(
        project(tmp_path / "p", '[[migrations]]\ntag = "v1"\nnew_classes = ["A"]\n'),
        exports("A"),
        root,
    )
    config = project(
        tmp_path / "p",
        '[[migrations]]\ntag = "v1"\nnew_classes = ["A"]\n'
        '[[migrations]]\ntag = "v2"\nnew_sqlite_classes = ["A"]\n',
    )
    refused(
        config,
        exports("A"),
        root,
        "migrations[1].new_sqlite_classes[0] (tag 'v2')",
        "class 'A' already exists (kv backend)",
        "cannot change",
    )


def test_154_new_class_must_be_exported(tmp_path: Path, root: Path) -> None:
    config = project(tmp_path / "p", V1)
    refused(
        config,
        exports("Other"),
        root,
        f"{config.config_path}: migrations[0].new_sqlite_classes[0] (tag 'v1'): ",
        "Cannot apply new-class migration to class A that is not exported by script [code: 10070]",
    )
    assert not root.exists()


# --- 155: tags ------------------------------------------------------------------------------


def test_155_tags_are_applied_in_order_exactly_once(tmp_path: Path, root: Path) -> None:
    first = apply_migrations(project(tmp_path / "p", V1), exports("A", "B"), root)
    with sqlite3.connect(root / "app" / METADATA_NAME) as db:
        (v1_at,) = db.execute("SELECT applied_at FROM migrations WHERE tag = 'v1'").fetchone()
    db.close()
    v2 = V1 + '[[migrations]]\ntag = "v2"\nrenamed_classes = [{from = "A", to = "B"}]\n'
    second = apply_migrations(project(tmp_path / "p", v2), exports("B"), root)
    assert second["B"].secret == first["A"].secret
    assert metadata(root)[0] == [(0, "v1"), (1, "v2")]
    with sqlite3.connect(root / "app" / METADATA_NAME) as db:
        assert db.execute("SELECT applied_at FROM migrations WHERE tag = 'v1'").fetchone() == (
            v1_at,
        )
    db.close()


def test_155_applying_twice_changes_nothing(tmp_path: Path, root: Path) -> None:
    v2 = V1 + '[[migrations]]\ntag = "v2"\nnew_classes = ["B"]\n'
    config = project(tmp_path / "p", v2, bindings=("A", "B"))
    first = apply_migrations(config, exports("A", "B"), root)
    add_object(first["A"])
    before = snapshot(root)
    assert apply_migrations(config, exports("A", "B"), root) == first
    assert snapshot(root) == before


@pytest.mark.parametrize(
    ("migrations", "where"),
    [
        ("", "migrations: "),  # every migration removed
        (V1, "migrations: "),  # v2 removed
        (V1 + '[[migrations]]\ntag = "v3"\nnew_classes = ["C"]\n', "migrations[1] (tag 'v3')"),
        ('[[migrations]]\ntag = "v0"\nnew_classes = ["C"]\n' + V1, "migrations[0] (tag 'v0')"),
    ],
    ids=["all-removed", "last-removed", "tag-changed", "inserted-before"],
)
def test_155_list_without_the_current_tag_is_refused(
    tmp_path: Path, root: Path, migrations: str, where: str
) -> None:
    v2 = V1 + '[[migrations]]\ntag = "v2"\nnew_classes = ["B"]\n'
    apply_migrations(project(tmp_path / "p", v2), exports("A", "B"), root)
    message = refused(
        project(tmp_path / "p", migrations),
        exports("A", "B", "C"),
        root,
        where,
        "Migration tag precondition failed; current tag is v2",
        "['v1', 'v2']",
    )
    assert "applied migrations" in message


def test_155_migrations_after_the_applied_prefix_are_applied(tmp_path: Path, root: Path) -> None:
    apply_migrations(project(tmp_path / "p", V1), exports("A"), root)
    v3 = V1 + "".join(f'[[migrations]]\ntag = "v{i}"\nnew_classes = ["C{i}"]\n' for i in (2, 3))
    states = apply_migrations(project(tmp_path / "p", v3), exports("A", "C2", "C3"), root)
    assert sorted(states) == ["A", "C2", "C3"]
    assert metadata(root)[0] == [(0, "v1"), (1, "v2"), (2, "v3")]


# --- 155: an applied migration edited afterwards ----------------------------------------------

V1_AC = '[[migrations]]\ntag = "v1"\nnew_sqlite_classes = ["A"]\nnew_classes = ["C"]\n'


def test_155_class_renamed_inside_an_applied_migration_asks_for_renamed_classes(
    tmp_path: Path, root: Path
) -> None:
    # v1 was applied with class A; then A was renamed to B inside v1 (file, binding, code).
    states = apply_migrations(project(tmp_path / "p", V1, bindings=("A",)), exports("A"), root)
    add_object(states["A"])
    config = project(tmp_path / "p", V1.replace('["A"]', '["B"]'), bindings=("B",))
    message = refused(
        config,
        exports("B"),
        root,
        f"{config.config_path}: migrations[0] (tag 'v1'): ",
        f"migration 'v1' was applied to {root / 'app'} with different contents",
        "the data folder has class A (sqlite)",
        "the file's applied migrations now give class B (sqlite)",
        "restore 'v1' as it was applied",
        'in a new migration: tag = "v2", renamed_classes = [{from = "A", to = "B"}]',
    )
    # Not the binding error, which asked for what v1 already says.
    assert "10061" not in message
    assert "new_sqlite_classes" not in message


def test_155_edited_migration_in_a_json_file_gets_json_advice(tmp_path: Path, root: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "main.py").write_text("")
    wrangler = '{"name": "app", "main": "main.py", "migrations": [%s]}'
    applied = '{"tag": "v1", "new_sqlite_classes": ["A"]}'
    (folder / "wrangler.jsonc").write_text(wrangler % applied)
    apply_migrations(load_project(folder), exports("A"), root)
    (folder / "wrangler.jsonc").write_text(wrangler % applied.replace('"A"', '"B"'))
    refused(
        load_project(folder),
        exports("B"),
        root,
        "migrations[0] (tag 'v1')",
        '"tag": "v2", "renamed_classes": [{"from": "A", "to": "B"}]',
    )


def test_155_class_added_to_an_applied_migration(tmp_path: Path, root: Path) -> None:
    apply_migrations(project(tmp_path / "p", V1), exports("A"), root)
    edited = V1.replace('["A"]', '["A", "C"]')
    refused(
        project(tmp_path / "p", edited),
        exports("A", "C"),
        root,
        "migrations[0] (tag 'v1')",
        "the data folder has class A (sqlite)",
        "now give classes A (sqlite), C (sqlite)",
        'new_sqlite_classes = ["C"]',
    )


def test_155_class_removed_from_an_applied_migration(tmp_path: Path, root: Path) -> None:
    apply_migrations(project(tmp_path / "p", V1_AC), exports("A", "C"), root)
    refused(
        project(tmp_path / "p", V1),
        exports("A", "C"),
        root,
        "migrations[0] (tag 'v1')",
        "the data folder has classes A (sqlite), C (kv)",
        'deleted_classes = ["C"]',
    )


def test_155_backend_changed_inside_an_applied_migration(tmp_path: Path, root: Path) -> None:
    apply_migrations(project(tmp_path / "p", V1_AC), exports("A", "C"), root)
    edited = '[[migrations]]\ntag = "v1"\nnew_sqlite_classes = ["A", "C"]\n'
    refused(
        project(tmp_path / "p", edited),
        exports("A", "C"),
        root,
        "migrations[0] (tag 'v1')",
        "class C is kv in the data folder, and a class's storage backend cannot change",
    )


def test_155_the_edited_tag_is_the_one_named(tmp_path: Path, root: Path) -> None:
    # v2 deleted C when it was applied; the deletion was later taken out of v2.
    v2 = V1_AC + '[[migrations]]\ntag = "v2"\ndeleted_classes = ["C"]\nnew_classes = ["D"]\n'
    apply_migrations(project(tmp_path / "p", V1_AC), exports("A", "C"), root)
    apply_migrations(project(tmp_path / "p", v2), exports("A", "D"), root)
    edited = V1_AC + '[[migrations]]\ntag = "v2"\nnew_classes = ["D"]\n'
    refused(
        project(tmp_path / "p", edited),
        exports("A", "C", "D"),
        root,
        "migrations[1] (tag 'v2'): migration 'v2' was applied",
        "the data folder has classes A (sqlite), D (kv)",
    )


def test_155_edits_that_change_no_class_are_accepted(tmp_path: Path, root: Path) -> None:
    first = apply_migrations(project(tmp_path / "p", V1_AC), exports("A", "C"), root)
    reordered = '[[migrations]]\nnew_classes = ["C"]\nnew_sqlite_classes = ["A"]\ntag = "v1"\n'
    assert apply_migrations(project(tmp_path / "p", reordered), exports("A", "C"), root) == first


# --- 156: renames ---------------------------------------------------------------------------

V2_RENAME = V1 + '[[migrations]]\ntag = "v2"\nrenamed_classes = [{from = "A", to = "B"}]\n'


def test_156_rename_keeps_objects_secret_and_ids(tmp_path: Path, root: Path) -> None:
    before = apply_migrations(project(tmp_path / "p", V1, bindings=("A",)), exports("A"), root)
    object_id = add_object(before["A"])
    after = apply_migrations(
        project(tmp_path / "p", V2_RENAME, bindings=("B",)), exports("B"), root
    )
    assert list(after) == ["B"]
    assert (after["B"].secret, after["B"].backend) == (before["A"].secret, Backend.SQLITE)
    assert not before["A"].directory.exists()
    assert (after["B"].directory / f"{object_id}.sqlite").read_bytes() == b"object x"
    assert (after["B"].directory / f"{object_id}.sqlite-wal").exists()
    # The same id is still valid for the renamed namespace.
    assert IdMinter(after["B"].secret).id_from_string(object_id).to_string() == object_id
    assert metadata(root)[1] == [("B", "sqlite", "active", "v2", None)]


@pytest.mark.parametrize(
    ("rename", "exported", "needle"),
    [
        ('{from = "Z", to = "B"}', ("B",), "from non-existent class Z"),
        ('{from = "A", to = "C"}', ("A", "C"), "to class C because it already exists"),
        ('{from = "A", to = "B"}', ("A",), "to class B that is not exported by script"),
    ],
    ids=["from-missing", "to-exists", "to-not-exported"],
)
def test_156_rename_refusals(
    tmp_path: Path, root: Path, rename: str, exported: tuple[str, ...], needle: str
) -> None:
    v1 = '[[migrations]]\ntag = "v1"\nnew_classes = ["A", "C"]\n'
    states = apply_migrations(project(tmp_path / "p", v1), exports("A", "C"), root)
    add_object(states["A"])
    config = project(
        tmp_path / "p", v1 + f'[[migrations]]\ntag = "v2"\nrenamed_classes = [{rename}]\n'
    )
    refused(
        config, exports(*exported), root, "migrations[1].renamed_classes[0]", "(tag 'v2')", needle
    )


def test_156_rename_redone_after_a_crash_that_moved_the_folder(tmp_path: Path, root: Path) -> None:
    states = apply_migrations(project(tmp_path / "p", V1), exports("A"), root)
    object_id = add_object(states["A"])
    os.replace(root / "app" / "A", root / "app" / "B")  # moved, then the process died
    after = apply_migrations(project(tmp_path / "p", V2_RENAME), exports("B"), root)
    assert after["B"].secret == states["A"].secret
    assert (root / "app" / "B" / f"{object_id}.sqlite").exists()
    assert metadata(root)[0] == [(0, "v1"), (1, "v2")]


# --- 157: deletes ---------------------------------------------------------------------------

V2_DELETE = V1 + '[[migrations]]\ntag = "v2"\ndeleted_classes = ["A"]\n'


def test_157_delete_removes_all_objects(tmp_path: Path, root: Path) -> None:
    states = apply_migrations(project(tmp_path / "p", V1), exports("A"), root)
    add_object(states["A"], "x")
    add_object(states["A"], "y")
    assert apply_migrations(project(tmp_path / "p", V2_DELETE), exports(), root) == {}
    assert not (root / "app" / "A").exists()
    assert metadata(root)[1] == [("A", "sqlite", "deleted", "v2", None)]


def test_157_delete_requires_the_binding_to_be_removed(tmp_path: Path, root: Path) -> None:
    states = apply_migrations(project(tmp_path / "p", V1, bindings=("A",)), exports("A"), root)
    add_object(states["A"])
    refused(
        project(tmp_path / "p", V2_DELETE, bindings=("A",)),
        exports("A"),
        root,
        "migrations[1].deleted_classes[0] (tag 'v2')",
        "Cannot apply --delete-class migration to class 'A' without also removing the binding "
        "that references it. [code: 10061]",
        "durable_objects.bindings[0] (A_NS)",
    )


def test_157_delete_of_a_non_existent_class_is_refused(tmp_path: Path, root: Path) -> None:
    apply_migrations(project(tmp_path / "p", V1), exports("A"), root)
    config = project(tmp_path / "p", V1 + '[[migrations]]\ntag = "v2"\ndeleted_classes = ["Z"]\n')
    refused(
        config,
        exports("A"),
        root,
        "migrations[1].deleted_classes[0] (tag 'v2')",
        "Cannot apply deleted_classes migration to non-existent class Z",
    )


def test_157_deleted_class_can_be_created_again_with_a_new_secret(
    tmp_path: Path, root: Path
) -> None:
    first = apply_migrations(project(tmp_path / "p", V1), exports("A"), root)
    add_object(first["A"])
    v3 = V2_DELETE + '[[migrations]]\ntag = "v3"\nnew_classes = ["A"]\n'
    again = apply_migrations(project(tmp_path / "p", v3, bindings=("A",)), exports("A"), root)
    assert again["A"].backend is Backend.KV
    assert again["A"].secret != first["A"].secret
    assert list(again["A"].directory.iterdir()) == []


def test_157_delete_redone_after_a_partial_removal(tmp_path: Path, root: Path) -> None:
    states = apply_migrations(project(tmp_path / "p", V1), exports("A"), root)
    object_id = add_object(states["A"])
    (states["A"].directory / f"{object_id}.sqlite").unlink()  # removal interrupted
    assert apply_migrations(project(tmp_path / "p", V2_DELETE), exports(), root) == {}
    assert not states["A"].directory.exists()


# --- 158: transfers ---------------------------------------------------------------------------

TRANSFER = (
    '[[migrations]]\ntag = "t1"\n'
    'transferred_classes = [{from = "A", from_script = "old", to = "B"}]\n'
)


def test_158_transfer_moves_a_class_between_scripts(tmp_path: Path, root: Path) -> None:
    old = apply_migrations(project(tmp_path / "old", V1, name="old"), exports("A"), root)
    object_id = add_object(old["A"])
    new = apply_migrations(
        project(tmp_path / "new", TRANSFER, name="new", bindings=("B",)), exports("B"), root
    )
    assert (new["B"].secret, new["B"].backend) == (old["A"].secret, Backend.SQLITE)
    assert new["B"].directory == root / "new" / "B"
    assert (new["B"].directory / f"{object_id}.sqlite").read_bytes() == b"object x"
    assert not (root / "old" / "A").exists()
    assert IdMinter(new["B"].secret).id_from_string(object_id).to_string() == object_id
    assert metadata(root, "old")[1] == [("A", "sqlite", "transferred", "t1", "new")]
    assert metadata(root, "new") == ([(0, "t1")], [("B", "sqlite", "active", "t1", None)])
    # The old script no longer has the class: its binding must go (153), its data is gone.
    refused(project(tmp_path / "old", V1, name="old", bindings=("A",)), exports("A"), root, "10061")
    assert apply_migrations(project(tmp_path / "old", V1, name="old"), exports("A"), root) == {}
    # Applying the transfer again changes nothing.
    before = snapshot(root)
    config = project(tmp_path / "new", TRANSFER, name="new", bindings=("B",))
    assert apply_migrations(config, exports("B"), root) == new
    assert snapshot(root) == before


@pytest.mark.parametrize(
    ("transfer", "exported", "needles"),
    [
        ('{from = "A", from_script = "nowhere", to = "B"}', ("B",), ("never created there",)),
        ('{from = "Z", from_script = "old", to = "B"}', ("B",), ("non-existent class Z",)),
        (
            '{from = "A", from_script = "old", to = "C"}',
            ("B", "C"),
            ("C because it already exists",),
        ),
        ('{from = "A", from_script = "old", to = "B"}', (), ("B that is not exported",)),
        ('{from = "A", from_script = "new", to = "B"}', ("B",), ("use renamed_classes",)),
        ('{from = "A", from_script = "../old", to = "B"}', ("B",), ("cannot be a folder name",)),
    ],
    ids=["no-script", "no-class", "to-exists", "to-not-exported", "same-script", "bad-name"],
)
def test_158_transfer_refusals(
    tmp_path: Path,
    root: Path,
    transfer: str,
    exported: tuple[str, ...],
    needles: tuple[str, ...],
) -> None:
    apply_migrations(project(tmp_path / "old", V1, name="old"), exports("A"), root)
    c1 = '[[migrations]]\ntag = "c1"\nnew_classes = ["C"]\n'
    apply_migrations(project(tmp_path / "new", c1, name="new"), exports("C"), root)
    migrations = c1 + f'[[migrations]]\ntag = "t1"\ntransferred_classes = [{transfer}]\n'
    config = project(tmp_path / "new", migrations, name="new")
    refused(config, exports("C", *exported), root, "migrations[1].transferred_classes[0", *needles)


def test_158_a_class_cannot_be_transferred_twice(tmp_path: Path, root: Path) -> None:
    apply_migrations(project(tmp_path / "old", V1, name="old"), exports("A"), root)
    twice = TRANSFER + (
        '[[migrations]]\ntag = "t2"\n'
        'transferred_classes = [{from = "A", from_script = "old", to = "C"}]\n'
    )
    refused(
        project(tmp_path / "new", twice, name="new"),
        exports("B", "C"),
        root,
        "migrations[1].transferred_classes[0].from (tag 't2')",
        "it is transferred",
    )


@pytest.mark.parametrize("moved", [False, True], ids=["marked", "marked-and-moved"])
def test_158_transfer_redone_after_a_crash(tmp_path: Path, root: Path, moved: bool) -> None:
    old = apply_migrations(project(tmp_path / "old", V1, name="old"), exports("A"), root)
    object_id = add_object(old["A"])
    # The source was marked (and maybe its folder moved); the process died before t1 was recorded.
    with sqlite3.connect(root / "old" / METADATA_NAME) as db:
        db.execute("UPDATE classes SET state = 'transferred', tag = 't1', moved_to = 'new'")
    db.close()
    if moved:
        (root / "new").mkdir()
        os.replace(root / "old" / "A", root / "new" / "B")
    new = apply_migrations(project(tmp_path / "new", TRANSFER, name="new"), exports("B"), root)
    assert new["B"].secret == old["A"].secret
    assert (new["B"].directory / f"{object_id}.sqlite").exists()
    assert not (root / "old" / "A").exists()
    assert metadata(root, "new")[0] == [(0, "t1")]
    assert metadata(root, "old")[1] == [("A", "sqlite", "transferred", "t1", "new")]


def test_158_marker_of_another_tag_is_not_a_half_done_transfer(tmp_path: Path, root: Path) -> None:
    apply_migrations(project(tmp_path / "old", V1, name="old"), exports("A"), root)
    with sqlite3.connect(root / "old" / METADATA_NAME) as db:
        db.execute("UPDATE classes SET state = 'transferred', tag = 'other', moved_to = 'new'")
    db.close()
    config = project(tmp_path / "new", TRANSFER, name="new")
    refused(config, exports("B"), root, "non-existent class A", "it is transferred")


# --- 159: exports ---------------------------------------------------------------------------


def test_159_unexported_class_with_objects_is_refused(tmp_path: Path, root: Path) -> None:
    states = apply_migrations(project(tmp_path / "p", V1, bindings=("A",)), exports("A"), root)
    add_object(states["A"])
    refused(
        project(tmp_path / "p", V1),
        exports(),
        root,
        "New version of script does not export class 'A' which is depended on by existing "
        "Durable Objects. Did you forget to export it or did you want to delete it? Use a "
        "delete-class migration. [code: 10064]",
    )


def test_159_unexported_class_without_objects_is_accepted(tmp_path: Path, root: Path) -> None:
    apply_migrations(project(tmp_path / "p", V1, bindings=("A",)), exports("A"), root)
    assert list(apply_migrations(project(tmp_path / "p", V1), exports(), root)) == ["A"]


def test_159_exported_class_no_longer_bound_keeps_its_data(tmp_path: Path, root: Path) -> None:
    states = apply_migrations(project(tmp_path / "p", V1, bindings=("A",)), exports("A"), root)
    object_id = add_object(states["A"])
    assert apply_migrations(project(tmp_path / "p", V1), exports("A"), root) == states
    assert (states["A"].directory / f"{object_id}.sqlite").exists()


def test_159_delete_migration_lets_the_export_go(tmp_path: Path, root: Path) -> None:
    states = apply_migrations(project(tmp_path / "p", V1, bindings=("A",)), exports("A"), root)
    add_object(states["A"])
    assert apply_migrations(project(tmp_path / "p", V2_DELETE), exports(), root) == {}
    assert not states["A"].directory.exists()


# --- a bad list changes nothing ---------------------------------------------------------------


@pytest.mark.parametrize(
    "later",
    [
        # a good tag followed by a bad one: the good one must not be applied either
        'tag = "v2"\nnew_classes = ["B"]\n[[migrations]]\ntag = "v3"\ndeleted_classes = ["Z"]\n',
        'tag = "v2"\nrenamed_classes = [{from = "A", to = "B"}]\n'
        '[[migrations]]\ntag = "v3"\nnew_classes = ["B"]\n',
        'tag = "v2"\ndeleted_classes = ["A"]\n[[migrations]]\ntag = "v3"\nnew_classes = ["Q"]\n',
        'tag = "v2"\nnew_classes = ["B"]\n'
        '[[migrations]]\ntag = "v3"\ntransferred_classes = [{from = "A", from_script = "x", '
        'to = "C"}]\n',
    ],
    ids=["delete-missing", "new-after-rename", "new-not-exported", "transfer-missing"],
)
def test_bad_list_changes_nothing(tmp_path: Path, root: Path, later: str) -> None:
    states = apply_migrations(project(tmp_path / "p", V1), exports("A"), root)
    add_object(states["A"])
    before = metadata(root)
    config = project(tmp_path / "p", V1 + "[[migrations]]\n" + later)
    refused(config, exports("A", "B", "C"), root, "migrations[2]", "(tag 'v3')")
    assert metadata(root) == before


def test_no_migrations_creates_no_data_folder(tmp_path: Path, root: Path) -> None:
    assert apply_migrations(project(tmp_path / "p"), exports("A"), root) == {}
    assert not root.exists()


def test_foreign_files_in_a_new_class_folder_are_refused(tmp_path: Path, root: Path) -> None:
    apply_migrations(project(tmp_path / "p", V1), exports("A"), root)
    (root / "app" / "B").mkdir()
    (root / "app" / "B" / "stray.sqlite").write_bytes(b"?")
    config = project(tmp_path / "p", V1 + '[[migrations]]\ntag = "v2"\nnew_classes = ["B"]\n')
    refused(config, exports("A", "B"), root, "(tag 'v2')", "already holds files")


def test_newer_metadata_schema_is_refused(tmp_path: Path, root: Path) -> None:
    apply_migrations(project(tmp_path / "p", V1), exports("A"), root)
    with sqlite3.connect(root / "app" / METADATA_NAME) as db:
        db.execute("PRAGMA user_version = 99")
    db.close()
    refused(
        project(tmp_path / "p", V1),
        exports("A"),
        root,
        f"{root / 'app' / METADATA_NAME}: data format 99 is newer than this objectd's (1): "
        "a newer objectd wrote this data folder; run that version",
    )


def test_environment_bindings_are_named_by_their_key_path(tmp_path: Path, root: Path) -> None:
    # checklist 153 in a Wrangler environment: the script is <name>-<env>, its own data folder
    folder = tmp_path / "p"
    project(folder)
    (folder / "wrangler.toml").write_text(
        'name = "app"\nmain = "main.py"\n[[env.staging.durable_objects.bindings]]\n'
        'name = "A_NS"\nclass_name = "A"\n'
    )
    config = load_project(folder, env="staging")
    refused(config, exports("A"), root, "env.staging.durable_objects.bindings[0] (A_NS)", "10061")
    (folder / "wrangler.toml").write_text((folder / "wrangler.toml").read_text() + V1)
    states = apply_migrations(load_project(folder, env="staging"), exports("A"), root)
    assert states["A"].directory == root / "app-staging" / "A"


def test_two_starts_at_once_apply_each_tag_once(tmp_path: Path, root: Path) -> None:
    v3 = V1 + "".join(f'[[migrations]]\ntag = "v{i}"\nnew_classes = ["C{i}"]\n' for i in (2, 3))
    config = project(tmp_path / "p", v3)
    results: list[dict[str, ClassState]] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            results.append(apply_migrations(config, exports("A", "C2", "C3"), root))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert results[0] == results[1]
    assert metadata(root)[0] == [(0, "v1"), (1, "v2"), (2, "v3")]
