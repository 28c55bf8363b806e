"""objectd.config: wrangler files, environments, .dev.vars, and every refusal."""

from __future__ import annotations

import dataclasses
import logging
import textwrap
from pathlib import Path

import pytest

from objectd.config import (
    DurableObjectBinding,
    Limits,
    Migration,
    RenamedClass,
    TransferredClass,
    find_config,
    load_project,
    parse_dev_vars,
    secrets_from_environ,
)
from objectd.errors import ConfigError, MigrationError

BASE_TOML = 'name = "app"\nmain = "src/entry.py"\n'


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder holding an empty entry module at src/entry.py."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "entry.py").write_text("")
    return tmp_path


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path.resolve()


def load_error(folder: Path, name: str, text: str, **kwargs: str) -> tuple[Path, str]:
    """Write ``name`` and load it; return the file path and the ConfigError message."""
    path = write(folder, name, text)
    with pytest.raises(ConfigError) as info:
        load_project(folder, **kwargs)
    return path, str(info.value)


# --- the three formats ----------------------------------------------------------------


def test_toml_is_read_into_frozen_values(project: Path) -> None:
    # checklist 153-158: every migration directive kind; checklist 160: binding keys
    path = write(
        project,
        "wrangler.toml",
        """
        name = "counter-app"
        main = "src/entry.py"
        compatibility_date = "2024-09-23"
        compatibility_flags = ["python_workers"]

        [vars]
        GREETING = "hi"
        RETRIES = 3
        FEATURES = { beta = true, ratio = 0.5, list = [1, "two", { three = 3 }] }

        [limits]
        cpu_ms = 50000

        [[durable_objects.bindings]]
        name = "COUNTER"
        class_name = "Counter"

        [[durable_objects.bindings]]
        name = "SHARED"
        class_name = "Shared"
        script_name = "other-worker"
        environment = "staging"

        [[migrations]]
        tag = "v1"
        new_classes = ["Legacy"]
        new_sqlite_classes = ["Counter", "Old"]

        [[migrations]]
        tag = "v2"
        renamed_classes = [{ from = "Old", to = "New" }]
        deleted_classes = ["Legacy"]
        transferred_classes = [{ from = "Theirs", from_script = "old-worker", to = "Mine" }]
        """,
    )
    config = load_project(project)
    assert config.root == project.resolve()
    assert config.config_path == path
    assert config.name == "counter-app"
    assert config.main == project.resolve() / "src" / "entry.py"
    assert config.main.is_absolute()
    assert config.compatibility_date == "2024-09-23"
    assert config.compatibility_flags == ("python_workers",)
    assert config.limits == Limits(cpu_ms=50000)
    assert config.environment is None
    assert config.warnings == ()
    assert config.secrets == {}
    assert dict(config.vars) == {
        "GREETING": "hi",
        "RETRIES": 3,
        "FEATURES": {"beta": True, "ratio": 0.5, "list": [1, "two", {"three": 3}]},
    }
    assert config.durable_objects == (
        DurableObjectBinding(name="COUNTER", class_name="Counter"),
        DurableObjectBinding(
            name="SHARED", class_name="Shared", script_name="other-worker", environment="staging"
        ),
    )
    assert config.migrations == (
        Migration(tag="v1", new_classes=("Legacy",), new_sqlite_classes=("Counter", "Old")),
        Migration(
            tag="v2",
            renamed_classes=(RenamedClass(from_name="Old", to="New"),),
            deleted_classes=("Legacy",),
            transferred_classes=(
                TransferredClass(from_name="Theirs", from_script="old-worker", to="Mine"),
            ),
        ),
    )


def test_values_are_immutable(project: Path) -> None:
    write(project, "wrangler.toml", BASE_TOML + '[vars]\nA = "1"\n')
    config = load_project(project)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.vars["A"] = "2"  # type: ignore[index]
    with pytest.raises(TypeError):
        config.secrets["A"] = "2"  # type: ignore[index]


def test_jsonc_accepts_comments_and_trailing_commas(project: Path) -> None:
    write(
        project,
        "wrangler.jsonc",
        """
        // the worker
        {
          "$schema": "node_modules/wrangler/config-schema.json",
          "name": "app", /* block comment */
          "main": "src/entry.py",
          "durable_objects": {
            "bindings": [
              { "name": "COUNTER", "class_name": "Counter", },  // trailing comma
            ],
          },
          "migrations": [{ "tag": "v1", "new_sqlite_classes": ["Counter"] }],
          "vars": { "LIMIT": 10, "NAMES": ["a", "b"], "NOTHING": null },
        }
        """,
    )
    config = load_project(project)
    assert config.durable_objects == (DurableObjectBinding("COUNTER", "Counter"),)
    assert config.migrations == (Migration("v1", new_sqlite_classes=("Counter",)),)
    assert dict(config.vars) == {"LIMIT": 10, "NAMES": ["a", "b"], "NOTHING": None}
    assert config.warnings == ()  # "$schema" is editor metadata, not a warning


def test_plain_json(project: Path) -> None:
    write(
        project,
        "wrangler.json",
        '{"name": "app", "main": "src/entry.py", "compatibility_date": "2025-01-31",'
        ' "limits": {"cpu_ms": 300000}}',
    )
    config = load_project(project)
    assert (config.name, config.compatibility_date) == ("app", "2025-01-31")
    assert config.limits.cpu_ms == 300000
    assert config.durable_objects == ()
    assert config.migrations == ()


def test_json_duplicate_keys_warn_and_last_wins(project: Path) -> None:
    write(project, "wrangler.json", '{"name": "a", "name": "b", "main": "src/entry.py"}')
    config = load_project(project)
    assert config.name == "b"
    assert any("duplicate keys ['name']" in warning for warning in config.warnings)


# --- finding the file -----------------------------------------------------------------


def test_precedence_json_then_jsonc_then_toml(project: Path) -> None:
    json_path = write(project, "wrangler.json", '{"name": "from-json", "main": "src/entry.py"}')
    write(project, "wrangler.jsonc", '{"name": "from-jsonc", "main": "src/entry.py"}')
    write(project, "wrangler.toml", 'name = "from-toml"\nmain = "src/entry.py"\n')
    assert find_config(project) == json_path
    config = load_project(project)
    assert config.name == "from-json"
    assert config.config_path == json_path
    [warning] = config.warnings
    assert "wrangler.jsonc" in warning
    assert "wrangler.toml" in warning
    assert "ignored" in warning


def test_jsonc_wins_over_toml(project: Path) -> None:
    jsonc_path = write(project, "wrangler.jsonc", '{"name": "j", "main": "src/entry.py"}')
    write(project, "wrangler.toml", BASE_TOML)
    assert find_config(project) == jsonc_path
    assert "wrangler.toml" in load_project(project).warnings[0]


def test_a_wrangler_file_can_be_passed_directly(project: Path) -> None:
    path = write(project, "wrangler.staging.toml", 'name = "direct"\nmain = "src/entry.py"\n')
    write(project, "wrangler.json", '{"name": "not-me", "main": "src/entry.py"}')
    assert find_config(path) == path
    config = load_project(str(path))
    assert config.name == "direct"
    assert config.config_path == path
    assert config.warnings == ()


def test_find_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no wrangler\.json, wrangler\.jsonc or wrangler\.toml"):
        find_config(tmp_path)
    with pytest.raises(ConfigError, match="no such file or folder"):
        load_project(tmp_path / "missing")
    other = tmp_path / "config.yaml"
    other.write_text("name: x\n")
    with pytest.raises(ConfigError, match=r"config\.yaml: expected a wrangler file"):
        load_project(other)


# --- parse errors name file, line and column ------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "position", "kind"),
    [
        ("wrangler.toml", 'name = "app"\nmain = "src/entry.py"\nbroken = \n', ":3:10:", "TOML"),
        ("wrangler.toml", 'name = "app\n', ":1:", "TOML"),
        ("wrangler.toml", 'name = "app"\nname = "again"\n', ":2:15:", "TOML"),
        ("wrangler.toml", 'name = "app"\nname = "x"', ":2:11:", "TOML"),  # "end of document"
        ("wrangler.json", '{\n  "name": "app",\n  "main": tru\n}', ":3:", "JSON"),
        ("wrangler.jsonc", '{\n  // comment\n  "name": "app",,\n}', ":3:", "JSON"),
        ("wrangler.json", "", ":1:1:", "JSON"),
    ],
)
def test_parse_errors_name_file_line_and_column(
    project: Path, name: str, text: str, position: str, kind: str
) -> None:
    path, message = load_error(project, name, text)
    assert message.startswith(f"{path}{position}")
    assert f"invalid {kind}" in message


def test_top_level_must_be_an_object(project: Path) -> None:
    path, message = load_error(project, "wrangler.json", "[1, 2]")
    assert message == f"{path}: expected an object, got [1, 2]"


# --- every refusal names the file and the key path ------------------------------------

BINDING = '[[durable_objects.bindings]]\nname = "COUNTER"\nclass_name = "Counter"\n'


@pytest.mark.parametrize(
    ("snippet", "key", "problem"),
    [
        (
            '[[durable_objects.bindings]]\nname = "COUNTER"\nclass_name = 3\n',
            "durable_objects.bindings[0].class_name",
            "expected a non-empty string, got 3",
        ),
        (
            '[[durable_objects.bindings]]\nname = "COUNTER"\n',
            "durable_objects.bindings[0].class_name",
            "expected a non-empty string, got null",
        ),
        (
            '[[durable_objects.bindings]]\nclass_name = "Counter"\n',
            "durable_objects.bindings[0].name",
            "expected a non-empty string",
        ),
        (
            '[[durable_objects.bindings]]\nname = "MY-DO"\nclass_name = "C"\n',
            "durable_objects.bindings[0].name",
            'expected a Python identifier (env attribute), got "MY-DO"',
        ),
        (
            '[[durable_objects.bindings]]\nname = "class"\nclass_name = "C"\n',
            "durable_objects.bindings[0].name",
            "expected a Python identifier",
        ),
        (
            '[[durable_objects.bindings]]\nname = "A"\nclass_name = "C"\nscript_name = ""\n',
            "durable_objects.bindings[0].script_name",
            'expected a non-empty string, got ""',
        ),
        (
            BINDING + BINDING,
            "durable_objects.bindings[1].name",
            "duplicate binding name 'COUNTER'",
        ),
        (
            'durable_objects = { bindings = "COUNTER" }\n',
            "durable_objects.bindings",
            'expected an array, got "COUNTER"',
        ),
        (
            'durable_objects = { bindings = ["COUNTER"] }\n',
            "durable_objects.bindings[0]",
            "expected a table",
        ),
        ('durable_objects = "x"\n', "durable_objects", "expected a table"),
        ("limits = { cpu_ms = 0 }\n", "limits.cpu_ms", "expected an integer from 1 to 300000"),
        ("limits = { cpu_ms = 300001 }\n", "limits.cpu_ms", "got 300001"),
        ("limits = { cpu_ms = true }\n", "limits.cpu_ms", "got true"),
        ("limits = { cpu_ms = 1.5 }\n", "limits.cpu_ms", "got 1.5"),
        ('limits = { cpu_ms = "100" }\n', "limits.cpu_ms", 'got "100"'),
        ('compatibility_date = "2024-1-1"\n', "compatibility_date", "YYYY-MM-DD"),
        ('compatibility_date = "2024-02-30"\n', "compatibility_date", "real calendar date"),
        ("compatibility_date = 2024-01-01\n", "compatibility_date", "quoted"),
        ("compatibility_date = 20240101\n", "compatibility_date", "got 20240101"),
        ('compatibility_flags = "nodejs_compat"\n', "compatibility_flags", "expected an array"),
        ("compatibility_flags = [1]\n", "compatibility_flags[0]", "non-empty string, got 1"),
        ("vars = 3\n", "vars", "expected a table, got 3"),
        ("[vars]\nWHEN = 2024-01-01\n", "vars.WHEN", "expected a JSON value"),
        ("[vars]\nX = { y = [1, 07:30:00] }\n", "vars.X.y[1]", "expected a JSON value"),
        (BINDING + '[vars]\nCOUNTER = "x"\n', "vars.COUNTER", "already used by a durable"),
        ('env = "staging"\n', "env", "expected a table"),
    ],
)
def test_config_errors(project: Path, snippet: str, key: str, problem: str) -> None:
    path, message = load_error(project, "wrangler.toml", BASE_TOML + snippet)
    assert message.startswith(f"{path}: {key}: ")
    assert problem in message


@pytest.mark.parametrize(
    ("snippet", "key", "problem"),
    [
        ('main = "src/missing.py"', "main", "expected an existing .py file"),
        ('main = "src/entry.js"', "main", "expected a Python module (a .py file)"),
        ('main = "src"', "main", "expected a Python module"),
        ("main = 1", "main", "expected a non-empty string, got 1"),
        ("", "main", "required"),
    ],
)
def test_main_must_be_an_existing_python_file(
    project: Path, snippet: str, key: str, problem: str
) -> None:
    (project / "src" / "entry.js").write_text("")
    path, message = load_error(project, "wrangler.toml", f'name = "app"\n{snippet}\n')
    assert message.startswith(f"{path}: {key}: ")
    assert problem in message


def test_name_must_be_a_string(project: Path) -> None:
    path, message = load_error(project, "wrangler.toml", 'name = 5\nmain = "src/entry.py"\n')
    assert message == f"{path}: name: expected a non-empty string, got 5"


def test_json_errors_use_the_same_key_paths(project: Path) -> None:
    path, message = load_error(
        project,
        "wrangler.jsonc",
        '{"main": "src/entry.py",'
        ' "durable_objects": {"bindings": [{"name": "A", "class_name": 3}]}}',
    )
    assert message == (
        f"{path}: durable_objects.bindings[0].class_name: expected a non-empty string, got 3"
    )
    path, message = load_error(project, "wrangler.jsonc", '{"main": "src/entry.py", "vars": []}')
    assert message == f"{path}: vars: expected an object, got []"


@pytest.mark.parametrize(
    ("snippet", "key", "problem"),
    [
        ("[[migrations]]\nnew_classes = ['A']\n", "migrations[0].tag", "non-empty string"),
        ("[[migrations]]\ntag = ''\n", "migrations[0].tag", 'got ""'),
        ("[[migrations]]\ntag = 1\n", "migrations[0].tag", "got 1"),
        (
            "[[migrations]]\ntag = 'v1'\n[[migrations]]\ntag = 'v1'\n",
            "migrations[1].tag",
            "duplicate tag 'v1'",
        ),
        ("migrations = { tag = 'v1' }\n", "migrations", "expected an array"),
        ("migrations = ['v1']\n", "migrations[0]", "expected a table"),
        (
            "[[migrations]]\ntag = 'v1'\nnew_sqlite_classes = ['A', '']\n",
            "migrations[0].new_sqlite_classes[1]",
            'non-empty string, got ""',
        ),
        (
            "[[migrations]]\ntag = 'v1'\nnew_classes = 'A'\n",
            "migrations[0].new_classes",
            'expected an array, got "A"',
        ),
        (
            "[[migrations]]\ntag = 'v1'\ndeleted_classes = [3]\n",
            "migrations[0].deleted_classes[0]",
            "got 3",
        ),
        (
            "[[migrations]]\ntag = 'v1'\nrenamed_classes = ['A']\n",
            "migrations[0].renamed_classes[0]",
            "expected a table",
        ),
        (
            "[[migrations]]\ntag = 'v1'\nrenamed_classes = [{ from = 'A' }]\n",
            "migrations[0].renamed_classes[0].to",
            "got null",
        ),
        (
            "[[migrations]]\ntag = 'v1'\ntransferred_classes = [{ from = 'A', to = 'B' }]\n",
            "migrations[0].transferred_classes[0].from_script",
            "non-empty string",
        ),
        (
            # checklist 153-158: one class, two directives in one migration
            "[[migrations]]\ntag = 'v1'\nnew_sqlite_classes = ['A']\ndeleted_classes = ['A']\n",
            "migrations[0].deleted_classes[0]",
            "class 'A' cannot be the target of more than one migration",
        ),
        (
            "[[migrations]]\ntag = 'v1'\nnew_sqlite_classes = ['A', 'A']\n",
            "migrations[0].new_sqlite_classes[1]",
            "class 'A' cannot be the target of more than one migration",
        ),
        (
            "[[migrations]]\ntag = 'v1'\nnew_classes = ['B']\n"
            "renamed_classes = [{ from = 'A', to = 'B' }]\n",
            "migrations[0].renamed_classes[0].to",
            "class 'B' cannot be the target of more than one migration",
        ),
        (
            "[[migrations]]\ntag = 'v1'\nnew_sqlite_classes = ['B']\n"
            "transferred_classes = [{ from = 'A', from_script = 'w', to = 'B' }]\n",
            "migrations[0].transferred_classes[0].to",
            "class 'B' cannot be the target of more than one migration",
        ),
    ],
)
def test_migration_errors(project: Path, snippet: str, key: str, problem: str) -> None:
    path = write(project, "wrangler.toml", BASE_TOML + snippet)
    with pytest.raises(MigrationError) as info:
        load_project(project)
    assert str(info.value).startswith(f"{path}: {key}: ")
    assert problem in str(info.value)


def test_one_class_may_appear_in_different_migrations(project: Path) -> None:
    # checklist 155-157: create, rename, then delete across tags
    write(
        project,
        "wrangler.toml",
        BASE_TOML
        + """
[[migrations]]
tag = "v1"
new_sqlite_classes = ["A"]
[[migrations]]
tag = "v2"
renamed_classes = [{ from = "A", to = "B" }]
[[migrations]]
tag = "v3"
deleted_classes = ["B"]
""",
    )
    tags = [migration.tag for migration in load_project(project).migrations]
    assert tags == ["v1", "v2", "v3"]


# --- warnings, not crashes ------------------------------------------------------------


def test_unknown_and_unsupported_keys_warn(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(
        project,
        "wrangler.toml",
        BASE_TOML
        + """
account_id = "abc"
workers_dev = true
colour = "blue"
kv_namespaces = [{ binding = "KV", id = "x" }]

[limits]
cpu_ms = 100
subrequests = 5
speed = 1

[durable_objects]
extra = 1

[[durable_objects.bindings]]
name = "A"
class_name = "A"
colour = "red"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["A"]
comment = "first"
renamed_classes = [{ from = "X", to = "Y", why = "typo" }]
""",
    )
    with caplog.at_level(logging.WARNING, logger="objectd.config"):
        config = load_project(project)
    expected = [
        f"{path}: account_id: not supported by objectd; ignored",
        f"{path}: workers_dev: not supported by objectd; ignored",
        f"{path}: colour: unknown key; ignored",
        f"{path}: kv_namespaces: not supported by objectd; ignored",
        f"{path}: durable_objects.extra: unknown key; ignored",
        f"{path}: durable_objects.bindings[0].colour: unknown key; ignored",
        f"{path}: migrations[0].comment: unknown key; ignored",
        f"{path}: migrations[0].renamed_classes[0].why: unknown key; ignored",
        f"{path}: limits.subrequests: not supported by objectd; ignored",
        f"{path}: limits.speed: unknown key; ignored",
    ]
    assert sorted(config.warnings) == sorted(expected)
    logged = [r.getMessage() for r in caplog.records if r.name == "objectd.config"]
    assert sorted(logged) == sorted(expected)
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    assert config.limits.cpu_ms == 100


TYPOS_TOML = [
    (
        '[[durable_object.bindings]]\nname = "A"\nclass_name = "A"\n',
        "durable_object",
        "durable_objects",
    ),
    ("[durable_objects]\nbinding = []\n", "durable_objects.binding", "bindings"),
    (
        '[[durable_objects.bindings]]\nname = "A"\nclass-name = "A"\n',
        "durable_objects.bindings[0].class-name",
        "class_name",
    ),
    (
        '[[migrations]]\ntag = "v1"\nnew_sqlite_class = ["A"]\n',
        "migrations[0].new_sqlite_class",
        "new_sqlite_classes",
    ),
    ('[[migration]]\ntag = "v1"\n', "migration", "migrations"),
    ("[limits]\ncpu_msec = 5\n", "limits.cpu_msec", "cpu_ms"),
    ("kv_namespace = []\n", "kv_namespace", "kv_namespaces"),  # close to an ignored key
]


@pytest.mark.parametrize(("snippet", "key", "meant"), TYPOS_TOML)
def test_unknown_key_close_to_a_known_one_is_refused(
    project: Path, snippet: str, key: str, meant: str
) -> None:
    path, message = load_error(project, "wrangler.toml", BASE_TOML + snippet)
    assert message == f"{path}: {key}: unknown key; did you mean `{meant}`?"


def test_unknown_key_close_to_a_known_one_is_refused_in_jsonc(project: Path) -> None:
    base = '{"name": "app", "main": "src/entry.py", // a comment\n'
    cases = [
        ('"durable_object": {"bindings": [{"name": "A", "class_name": "A"}]}', "durable_object",
         "durable_objects"),
        ('"durableObjects": {"bindings": []}', "durableObjects", "durable_objects"),
        ('"durable_objects": {"bindings": [{"name": "A", "classname": "A"}]}',
         "durable_objects.bindings[0].classname", "class_name"),
        ('"migrations": [{"tag": "v1", "new_sqlite_class": ["A"]}]',
         "migrations[0].new_sqlite_class", "new_sqlite_classes"),
        ('"migrations": [{"tag": "v1", "renamed_classes": [{"from": "A", "To": "B"}]}]',
         "migrations[0].renamed_classes[0].To", "to"),
    ]  # fmt: skip
    for snippet, key, meant in cases:
        path, message = load_error(project, "wrangler.jsonc", base + snippet + ",}")
        assert message == f"{path}: {key}: unknown key; did you mean `{meant}`?"
    with pytest.raises(MigrationError):  # still a migration error under `migrations`
        load_project(project)


def test_typo_in_an_environment_is_refused(project: Path) -> None:
    text = BASE_TOML + '[[env.staging.durable_object.bindings]]\nname = "A"\nclass_name = "A"\n'
    path, message = load_error(project, "wrangler.toml", text, env="staging")
    assert (
        message
        == f"{path}: env.staging.durable_object: unknown key; did you mean `durable_objects`?"
    )


def test_wrangler_keys_objectd_does_not_list_near_a_known_one_still_warn(project: Path) -> None:
    # Real wrangler keys that resemble a known one ("ratelimits" / "limits") stay warnings.
    write(project, "wrangler.toml", BASE_TOML + "ratelimits = []\nstreaming_tail_consumers = []\n")
    assert all("not supported by objectd" in w for w in load_project(project).warnings)


def test_missing_name_defaults_to_the_folder_name(project: Path) -> None:
    write(project, "wrangler.toml", 'main = "src/entry.py"\n')
    config = load_project(project)
    assert config.name == project.name
    assert any("name: not set" in warning for warning in config.warnings)


def test_binding_environment_without_script_name_warns(project: Path) -> None:
    # checklist 160
    write(
        project,
        "wrangler.toml",
        BASE_TOML + '[[durable_objects.bindings]]\nname = "A"\nclass_name = "A"\n'
        'environment = "staging"\n',
    )
    config = load_project(project)
    assert config.durable_objects[0].environment == "staging"
    assert any("has no effect without script_name" in warning for warning in config.warnings)


# --- [env.<name>] -----------------------------------------------------------------------

ENV_TOML = """
name = "app"
main = "src/entry.py"
compatibility_date = "2024-09-23"
compatibility_flags = ["python_workers"]
limits = { cpu_ms = 1000 }

[vars]
MODE = "top"

[[durable_objects.bindings]]
name = "COUNTER"
class_name = "Counter"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Counter"]

[env.staging]

[env.production]
name = "app-live"
main = "src/prod.py"
compatibility_date = "2025-01-01"
limits = { cpu_ms = 2000 }
vars = { MODE = "prod" }
durable_objects.bindings = [
  { name = "COUNTER", class_name = "Counter", script_name = "app" },
]
migrations = [{ tag = "p1", new_sqlite_classes = ["Counter"] }]
"""


def test_env_inherits_main_date_limits_and_migrations_but_not_vars_or_bindings(
    project: Path,
) -> None:
    write(project, "wrangler.toml", ENV_TOML)
    config = load_project(project, env="staging")
    assert config.environment == "staging"
    assert config.name == "app-staging"
    assert config.main == project.resolve() / "src" / "entry.py"
    assert config.compatibility_date == "2024-09-23"
    assert config.compatibility_flags == ("python_workers",)
    assert config.limits == Limits(cpu_ms=1000)
    assert config.migrations == (Migration("v1", new_sqlite_classes=("Counter",)),)
    assert dict(config.vars) == {}
    assert config.durable_objects == ()
    warnings = "\n".join(config.warnings)
    assert "vars: not inherited by environments; env.staging has none" in warnings
    assert "durable_objects: not inherited by environments; env.staging has none" in warnings


def test_env_overrides(project: Path) -> None:
    (project / "src" / "prod.py").write_text("")
    write(project, "wrangler.toml", ENV_TOML)
    config = load_project(project, env="production")
    assert config.name == "app-live"
    assert config.main == project.resolve() / "src" / "prod.py"
    assert config.compatibility_date == "2025-01-01"
    assert config.limits == Limits(cpu_ms=2000)
    assert dict(config.vars) == {"MODE": "prod"}
    assert config.durable_objects == (  # checklist 160
        DurableObjectBinding("COUNTER", "Counter", script_name="app"),
    )
    assert [migration.tag for migration in config.migrations] == ["p1"]
    assert config.warnings == ()


def test_top_level_is_used_without_env(project: Path) -> None:
    write(project, "wrangler.toml", ENV_TOML)
    config = load_project(project)
    assert config.name == "app"
    assert config.environment is None
    assert dict(config.vars) == {"MODE": "top"}
    assert len(config.durable_objects) == 1


def test_missing_env_lists_the_available_ones(project: Path) -> None:
    path, message = load_error(project, "wrangler.toml", ENV_TOML, env="qa")
    assert message == f"{path}: env.qa: no such environment; available: production, staging"
    path, message = load_error(project, "wrangler.toml", BASE_TOML, env="qa")
    assert message.startswith(f"{path}: env.qa: no such environment; available: none")


def test_env_name_defaults_from_folder_and_env(project: Path) -> None:
    write(project, "wrangler.toml", 'main = "src/entry.py"\n[env.dev]\n')
    assert load_project(project, env="dev").name == f"{project.name}-dev"


def test_env_errors_and_warnings_use_the_env_key_path(project: Path) -> None:
    path, message = load_error(
        project,
        "wrangler.toml",
        BASE_TOML + "[env.staging]\ncolour = 1\n"
        '[[env.staging.durable_objects.bindings]]\nname = "A"\nclass_name = 3\n',
        env="staging",
    )
    assert message.startswith(
        f"{path}: env.staging.durable_objects.bindings[0].class_name: expected a non-empty"
    )
    write(project, "wrangler.toml", BASE_TOML + "[env.staging]\ncolour = 1\nroutes = []\n")
    warnings = load_project(project, env="staging").warnings
    assert f"{path}: env.staging.colour: unknown key; ignored" in warnings
    assert f"{path}: env.staging.routes: not supported by objectd; ignored" in warnings
    path, message = load_error(project, "wrangler.toml", BASE_TOML + 'env.x = "y"\n', env="x")
    assert message.startswith(f"{path}: env.x: expected a table")


# --- .dev.vars ----------------------------------------------------------------------------


def test_parse_dev_vars_syntax(tmp_path: Path) -> None:
    text = textwrap.dedent(
        r"""
        # a comment

        PLAIN=value
        SPACED = spaced value
        export EXPORTED=yes
        EMPTY=
        TRAILING=bare # comment
        HASH=abc#def
        SINGLE='keep \n and # literally'
        DOUBLE="line1\nline2\t\"quoted\" \\ \x"
        DOUBLE_COMMENT="v" # note
        SINGLE_COMMENT='v' # note
        dotted.key-1=ok
        PLAIN=later wins
        """
    )
    assert parse_dev_vars(text, path=tmp_path / ".dev.vars") == {
        "PLAIN": "later wins",
        "SPACED": "spaced value",
        "EXPORTED": "yes",
        "EMPTY": "",
        "TRAILING": "bare",
        "HASH": "abc#def",
        "SINGLE": r"keep \n and # literally",
        "DOUBLE": 'line1\nline2\t"quoted" \\ \\x',
        "DOUBLE_COMMENT": "v",
        "SINGLE_COMMENT": "v",
        "dotted.key-1": "ok",
    }


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("JUST_A_WORD_s3cr3t", "expected KEY=VALUE"),
        ("1KEY=s3cr3t", "expected KEY=VALUE"),
        ("=s3cr3t", "expected KEY=VALUE"),
        ("KEY: s3cr3t", "expected KEY=VALUE"),
        ('KEY="s3cr3t', "KEY: unterminated quoted value"),
        ("KEY='s3cr3t' trailing", "after the closing quote"),
        ('KEY="s3"cr3t"', "after the closing quote"),
    ],
)
def test_parse_dev_vars_bad_line_names_file_and_line(
    tmp_path: Path, line: str, problem: str
) -> None:
    path = tmp_path / ".dev.vars"
    with pytest.raises(ConfigError) as info:
        parse_dev_vars(f"OK=1\n# comment\n{line}\n", path=path)
    assert str(info.value).startswith(f"{path}:3: ")
    assert problem in str(info.value)
    assert "s3" not in str(info.value)  # the line may hold a secret: never echo it


def test_secrets_come_from_dev_vars_and_win_over_vars(project: Path) -> None:
    write(project, "wrangler.toml", BASE_TOML + '[vars]\nTOKEN = "public"\nKEEP = "k"\n')
    write(project, ".dev.vars", 'TOKEN="s3cret"\nAPI_KEY=abc\n')
    config = load_project(project)
    assert dict(config.secrets) == {"TOKEN": "s3cret", "API_KEY": "abc"}
    assert dict(config.vars) == {"KEEP": "k"}
    assert any(
        "vars.TOKEN: overridden by the .dev.vars secret" in warning for warning in config.warnings
    )


def test_env_specific_dev_vars(project: Path) -> None:
    write(project, "wrangler.toml", BASE_TOML + "[env.staging]\n[env.prod]\n")
    write(project, ".dev.vars", "WHO=default\n")
    write(project, ".dev.vars.staging", "WHO=staging\n")
    assert load_project(project, env="staging").secrets == {"WHO": "staging"}
    assert load_project(project, env="prod").secrets == {"WHO": "default"}
    assert load_project(project).secrets == {"WHO": "default"}


def test_bad_dev_vars_line_fails_the_load(project: Path) -> None:
    write(project, "wrangler.toml", BASE_TOML)
    dev_vars = write(project, ".dev.vars", "A=1\nnot a line\n")
    with pytest.raises(ConfigError) as info:
        load_project(project)
    assert str(info.value).startswith(f"{dev_vars}:2: expected KEY=VALUE")


def test_secret_named_like_a_binding_is_refused(project: Path) -> None:
    write(project, "wrangler.toml", BASE_TOML + BINDING)
    dev_vars = write(project, ".dev.vars", "COUNTER=1\n")
    with pytest.raises(ConfigError) as info:
        load_project(project)
    assert str(info.value) == (
        f"{dev_vars}: COUNTER: name is already used by a durable object binding"
    )


# --- secrets passed in (objectd serve) ------------------------------------------------------


def test_secrets_from_environ_take_the_prefixed_variables_only() -> None:
    environ = {"PATH": "/bin", "OBJECTD_SECRET_API_KEY": "abc", "OBJECTD_SECRET_a.b": "c"}
    assert secrets_from_environ(environ) == {"API_KEY": "abc", "a.b": "c"}
    with pytest.raises(ConfigError, match="OBJECTD_SECRET_: the secret's name must follow"):
        secrets_from_environ({"OBJECTD_SECRET_": "x"})


def test_passed_secrets_replace_dev_vars(project: Path) -> None:
    write(project, "wrangler.toml", BASE_TOML + '[vars]\nTOKEN = "plain"\nOTHER = "kept"\n')
    write(project, ".dev.vars", "TOKEN=from-dev-vars\nDEV_ONLY=1\n")
    config = load_project(project, secrets={"TOKEN": "from-env"})
    assert dict(config.secrets) == {"TOKEN": "from-env"}
    assert dict(config.vars) == {"OTHER": "kept"}
    assert (
        f"{project.resolve()}: .dev.vars not read: it is for local development (`objectd dev`); "
        "pass secrets as OBJECTD_SECRET_<NAME> environment variables"
    ) in config.warnings
    assert any(
        "vars.TOKEN: overridden by the secret OBJECTD_SECRET_<NAME>" in w for w in config.warnings
    )
    (project / ".dev.vars").unlink()
    assert load_project(project, secrets={}).warnings == ()
    assert load_project(project, secrets={}).secrets == {}


def test_passed_secret_named_like_a_binding_is_refused(project: Path) -> None:
    write(project, "wrangler.toml", BASE_TOML + BINDING)
    with pytest.raises(ConfigError, match="OBJECTD_SECRET_COUNTER: secret 'COUNTER' is named"):
        load_project(project, secrets={"COUNTER": "x"})


# --- triggers.crons (issue 10 §3) --------------------------------------------------------


def test_triggers_crons_are_read_from_each_format(project: Path) -> None:
    write(
        project,
        "wrangler.toml",
        BASE_TOML + '[triggers]\ncrons = ["*/5 * * * *", "0 17 * * sun"]\n',
    )
    config = load_project(project)
    assert config.crons == ("*/5 * * * *", "0 17 * * sun")
    assert not any("triggers" in warning for warning in config.warnings)
    (project / "wrangler.toml").unlink()
    write(
        project,
        "wrangler.jsonc",
        '{"name": "app", "main": "src/entry.py", // cron\n "triggers": {"crons": ["0 0 L * *",]}}',
    )
    assert load_project(project).crons == ("0 0 L * *",)


def test_triggers_are_inherited_by_environments_unless_they_set_their_own(project: Path) -> None:
    write(
        project,
        "wrangler.toml",
        BASE_TOML + '[triggers]\ncrons = ["0 * * * *"]\n'
        "[env.staging]\n[env.quiet]\ntriggers = { crons = [] }\n",
    )
    assert load_project(project, env="staging").crons == ("0 * * * *",)
    assert load_project(project, env="quiet").crons == ()
    assert load_project(project).crons == ("0 * * * *",)


@pytest.mark.parametrize(
    ("triggers", "problem"),
    [
        (
            '{ crons = ["*/5 * * * *", "0 0 * * 0"] }',
            "triggers.crons[1]: invalid cron expression '0 0 * * 0': day of week '0': "
            "expected 1-7 (1 = Sunday) or SUN-SAT",
        ),
        (
            '{ crons = ["61 * * * *"] }',
            "triggers.crons[0]: invalid cron expression '61 * * * *': invalid minute",
        ),
        (
            '{ crons = ["* * * *"] }',
            "triggers.crons[0]: invalid cron expression '* * * *': expected 5 fields",
        ),
        ('{ crons = ["0 * * * *", "0 * * * *"] }', "triggers.crons[1]: duplicate cron"),
        ('{ crons = "0 * * * *" }', 'triggers.crons: expected an array, got "0 * * * *"'),
        ("{ crons = [5] }", "triggers.crons[0]: expected a non-empty string, got 5"),
    ],
)
def test_bad_cron_triggers_are_refused_with_file_key_and_string(
    project: Path, triggers: str, problem: str
) -> None:
    path, message = load_error(project, "wrangler.toml", BASE_TOML + f"triggers = {triggers}\n")
    assert message.startswith(f"{path}: {problem}"), message


def test_bad_cron_in_an_environment_names_its_key(project: Path) -> None:
    path, message = load_error(
        project,
        "wrangler.toml",
        BASE_TOML + '[env.prod]\ntriggers = { crons = ["0 0 15W * *"] }\n',
        env="prod",
    )
    assert message.startswith(f"{path}: env.prod.triggers.crons[0]: invalid cron expression"), (
        message
    )
