"""wrangler.toml / wrangler.json / wrangler.jsonc -> frozen dataclasses.

The only module that knows wrangler's key names.  ``load_project`` reads one
project folder (the wrangler file, then ``.dev.vars`` unless the secrets are passed in,
as ``objectd serve`` does from ``OBJECTD_SECRET_<NAME>`` environment variables) and
returns a ``ProjectConfig``; every refusal is a ``ConfigError`` whose message starts with
the file and the key path, and every unknown or unsupported key is a warning
(logged on ``objectd.config`` and kept in ``ProjectConfig.warnings``), never a
crash, so a project written for Cloudflare loads as it is.  The exception is an
unknown key that is nearly a known one (``durable_object``): that is a typo whose
section would silently be missing, so it is refused with the key it resembles.
"""

from __future__ import annotations

import datetime
import difflib
import json
import keyword
import logging
import math
import re
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

import json5

from objectd.cron import CronExpression
from objectd.errors import ConfigError, MigrationError

__all__ = [
    "DurableObjectBinding",
    "Limits",
    "Migration",
    "ProjectConfig",
    "RenamedClass",
    "TransferredClass",
    "find_config",
    "load_project",
    "parse_dev_vars",
    "secrets_from_environ",
]

_log = logging.getLogger("objectd.config")

# Wrangler's own precedence when a folder holds more than one.
_CONFIG_NAMES = ("wrangler.json", "wrangler.jsonc", "wrangler.toml")
_CONFIG_SUFFIXES = (".json", ".jsonc", ".toml")
# `objectd serve` takes secrets from the environment: OBJECTD_SECRET_API_KEY -> env.API_KEY.
SECRET_PREFIX = "OBJECTD_SECRET_"

# The keys objectd reads, at the top level and in an [env.<name>] section.
_READ_KEYS = frozenset({
    "name", "main", "compatibility_date", "compatibility_flags", "durable_objects",
    "migrations", "vars", "limits", "triggers",
})  # fmt: skip
# "$schema" is editor metadata that `wrangler init` writes into JSON files;
# warning about it would only be noise.
_TOP_KEYS = _READ_KEYS | {"env", "$schema"}
# Wrangler keys for features objectd does not provide: accepted with a warning.
_IGNORED_KEYS = frozenset({
    "account_id", "ai", "ai_search", "ai_search_namespaces", "alias",
    "analytics_engine_datasets", "assets", "base_dir", "browser", "build", "cloudchamber",
    "compliance_region", "containers", "d1_databases", "data_blobs", "define", "dev",
    "dispatch_namespaces", "exports", "find_additional_modules", "first_party_worker",
    "hyperdrive", "images", "jsx_factory", "jsx_fragment", "keep_names", "keep_vars",
    "kv_namespaces", "legacy_assets", "legacy_env", "logfwdr", "logpush", "media", "minify",
    "mtls_certificates", "no_bundle", "node_compat", "observability", "pages_build_output_dir",
    "pipelines", "placement", "preserve_file_names", "preview_urls", "python_modules", "queues",
    "r2_buckets", "ratelimits", "route", "routes", "rules", "secrets", "secrets_store_secrets",
    "send_email", "send_metrics", "services", "site", "streaming_tail_consumers",
    "tail_consumers", "text_blobs", "tsconfig", "unsafe", "unsafe_hello_world",
    "upload_source_maps", "usage_model", "vectorize", "version_metadata", "vpc_networks",
    "vpc_services", "wasm_modules", "worker_loaders", "workers_dev", "workflows", "zone_id"
})  # fmt: skip
_BINDING_KEYS = frozenset({"name", "class_name", "script_name", "environment"})
_MIGRATION_KEYS = frozenset({
    "tag", "new_classes", "new_sqlite_classes", "renamed_classes", "deleted_classes",
    "transferred_classes",
})  # fmt: skip
# How alike (difflib's ratio, case ignored) an unknown key must be to a known one to be
# refused as its typo.  Stricter than difflib's 0.6: wrangler keeps adding keys, and a
# real key objectd does not list yet ("ratelimits" against "limits": 0.75) must stay a
# warning; typos score higher ("durable_object" 0.97, "class-name" 0.9, "binding" 0.93).
_TYPO_CUTOFF = 0.8
_MAX_CPU_MS = 300_000
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True, slots=True)
class DurableObjectBinding:
    """One ``durable_objects.bindings`` entry (checklist 160)."""

    name: str
    class_name: str
    script_name: str | None = None
    environment: str | None = None


@dataclass(frozen=True, slots=True)
class RenamedClass:
    """``renamed_classes`` entry: wrangler's ``{from, to}``."""

    from_name: str
    to: str


@dataclass(frozen=True, slots=True)
class TransferredClass:
    """``transferred_classes`` entry: wrangler's ``{from, from_script, to}``."""

    from_name: str
    from_script: str
    to: str


@dataclass(frozen=True, slots=True)
class Migration:
    """One tagged entry of ``migrations``; applying it is the runtime's job."""

    tag: str
    new_classes: tuple[str, ...] = ()
    new_sqlite_classes: tuple[str, ...] = ()
    renamed_classes: tuple[RenamedClass, ...] = ()
    deleted_classes: tuple[str, ...] = ()
    transferred_classes: tuple[TransferredClass, ...] = ()


@dataclass(frozen=True, slots=True)
class Limits:
    cpu_ms: int | None = None  # 1..300_000; None means the platform default (30 s)


@dataclass(frozen=True, slots=True)
class ProjectConfig:
    """A loaded project: the wrangler file resolved for one environment, plus secrets."""

    root: Path  # the project folder (absolute)
    config_path: Path  # the wrangler file that was read (absolute)
    name: str  # worker/script name; `<name>-<env>` in an environment without its own name
    main: Path  # the entry module (absolute, an existing .py file)
    compatibility_date: str | None
    compatibility_flags: tuple[str, ...]
    durable_objects: tuple[DurableObjectBinding, ...]
    migrations: tuple[Migration, ...]
    vars: Mapping[str, Any]  # JSON values as parsed; a name also in `secrets` is left out
    secrets: Mapping[str, str]  # from `.dev.vars` (or `.dev.vars.<env>`), or as passed in
    limits: Limits
    environment: str | None
    warnings: tuple[str, ...]  # every warning logged while loading
    # ``triggers.crons``: each checked with objectd.cron; the scheduled() handler's runs.
    crons: tuple[str, ...] = ()

    def compatible(self, *, enable: str, disable: str, since: str) -> bool:
        """Whether a behaviour that is the default from ``since`` is on: its ``enable``
        flag turns it on, its ``disable`` flag off, else the compatibility date decides
        (no date: on, as wrangler then uses today's date).  Both flags are refused."""
        flags = self.compatibility_flags
        if enable in flags and disable in flags:
            raise ConfigError(
                f"{self.config_path}: compatibility_flags: {enable} and {disable} "
                "contradict each other; set at most one"
            )
        if enable in flags:
            return True
        if disable in flags:
            return False
        return self.compatibility_date is None or self.compatibility_date >= since


def find_config(directory: Path) -> Path:
    """The wrangler file objectd reads for ``directory`` (or ``directory`` itself if it is one)."""
    return _locate(Path(directory))[0]


def load_project(
    directory: str | Path, *, env: str | None = None, secrets: Mapping[str, str] | None = None
) -> ProjectConfig:
    """Read the project in ``directory`` (a folder or a wrangler file), for ``env`` if given.

    Secrets come from ``.dev.vars`` (local development, as with wrangler) unless
    ``secrets`` is given: then those are used and ``.dev.vars`` is not read.
    """
    config_path, shadowed = _locate(Path(directory))
    root = config_path.parent
    loader = _Loader(config_path)
    if shadowed:
        loader.warn(f"{config_path}: {', '.join(shadowed)} also found in {root}; ignored")
    raw = loader.table(_read(config_path, loader), "")
    loader.check_keys(raw, "", _TOP_KEYS, _IGNORED_KEYS)
    envs = loader.table(raw.get("env", {}), "env")
    section, prefix = raw, ""
    if env is not None:
        if env not in envs:
            available = ", ".join(sorted(envs)) or "none (the file has no [env.<name>] sections)"
            loader.fail(f"env.{env}", f"no such environment; available: {available}")
        section, prefix = loader.table(envs[env], f"env.{env}"), f"env.{env}."
        loader.check_keys(section, f"env.{env}", _READ_KEYS, _IGNORED_KEYS)
        for key in ("vars", "durable_objects"):
            if key in raw and key not in section:
                loader.warn(
                    f"{config_path}: {key}: not inherited by environments; env.{env} has none"
                )

    def setting(key: str, *, inherited: bool = True) -> tuple[Any, str]:
        """The value for ``key`` (None if absent) and the key path it came from."""
        if inherited and section.get(key) is None and raw.get(key) is not None:
            return raw[key], key
        return section.get(key), prefix + key

    suffix = "" if env is None else f"-{env}"
    if env is not None and section.get("name") is not None:
        name = loader.string(section["name"], f"env.{env}.name")
    elif raw.get("name") is not None:
        name = loader.string(raw["name"], "name") + suffix
    else:
        loader.warn(f"{config_path}: name: not set; using the folder name {root.name!r}")
        name = root.name + suffix
    bindings = _bindings(loader, *setting("durable_objects", inherited=False))
    variables = _vars(loader, *setting("vars", inherited=False))
    binding_names = {binding.name for binding in bindings}
    for var in variables:
        if var in binding_names:
            loader.fail(f"{prefix}vars.{var}", "name is already used by a durable object binding")
    if secrets is None:
        secrets, source = _secrets(root, env, binding_names), "the .dev.vars secret"
    else:
        secrets, source = dict(secrets), f"the secret {SECRET_PREFIX}<NAME>"
        if clashes := sorted(secrets.keys() & binding_names):
            raise ConfigError(
                f"{SECRET_PREFIX}{clashes[0]}: secret {clashes[0]!r} is named like a "
                "durable object binding; rename one of them"
            )
        if dev_vars := [p.name for p in _dev_vars_files(root, env) if p.is_file()]:
            loader.warn(
                f"{root}: {', '.join(dev_vars)} not read: it is for local development "
                f"(`objectd dev`); pass secrets as {SECRET_PREFIX}<NAME> environment variables"
            )
    for secret in secrets.keys() & variables.keys():
        loader.warn(f"{config_path}: {prefix}vars.{secret}: overridden by {source}")
        del variables[secret]
    return ProjectConfig(
        root=root,
        config_path=config_path,
        name=name,
        main=_main(loader, root, *setting("main")),
        compatibility_date=_date(loader, *setting("compatibility_date")),
        compatibility_flags=loader.strings(*setting("compatibility_flags")),
        durable_objects=bindings,
        migrations=_migrations(loader, *setting("migrations")),
        vars=MappingProxyType(variables),
        secrets=MappingProxyType(secrets),
        limits=_limits(loader, *setting("limits")),
        environment=env,
        warnings=tuple(loader.warnings),
        crons=_crons(loader, *setting("triggers")),
    )


_DOTENV_LINE = re.compile(r"(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)\s*=(?P<value>.*)")
_SINGLE_QUOTED = re.compile(r"'(?P<body>[^']*)'\s*(?:#.*)?")
_DOUBLE_QUOTED = re.compile(r'"(?P<body>(?:[^"\\]|\\.)*)"\s*(?:#.*)?')
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def parse_dev_vars(text: str, *, path: Path) -> dict[str, str]:
    """Parse dotenv text (``.dev.vars``); ``path`` is only used in error messages.

    ``KEY=VALUE`` lines with an optional ``export`` prefix, blank lines and ``#``
    comments.  Values are single-quoted (literal), double-quoted (``\\n``, ``\\r``,
    ``\\t``, ``\\"``, ``\\\\`` escapes) or bare; in a bare value ``#`` starts a
    comment only after whitespace, as in a shell.  A later line wins.
    """
    result: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _DOTENV_LINE.fullmatch(stripped)
        if match is None:
            # The line is not quoted back: it may hold a secret.
            raise ConfigError(
                f"{path}:{number}: expected KEY=VALUE (KEY: letters, digits, _ . -, "
                "not starting with a digit; optional 'export ' prefix)"
            )
        raw = match["value"]
        value = raw.strip()
        if value[:1] in ("'", '"'):
            quoted = (_SINGLE_QUOTED if value[0] == "'" else _DOUBLE_QUOTED).fullmatch(value)
            if quoted is None:
                raise ConfigError(
                    f"{path}:{number}: {match['key']}: unterminated quoted value or text "
                    "after the closing quote (only a # comment may follow it)"
                )
            value = quoted["body"]
            if raw.strip()[0] == '"':
                value = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], m[0]), value)
        else:
            value = re.split(r"\s#", raw, maxsplit=1)[0].strip()
        result[match["key"]] = value
    return result


class _Loader:
    """Checks values of one wrangler file: raises ConfigError, collects warnings."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.object_word = "a table" if path.suffix == ".toml" else "an object"
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        _log.warning("%s", message)
        self.warnings.append(message)

    def fail(self, key: str, problem: str) -> NoReturn:
        raise ConfigError(f"{self.path}: {key}: {problem}" if key else f"{self.path}: {problem}")

    def check_keys(
        self,
        table: Mapping[str, Any],
        key: str,
        known: frozenset[str],
        ignored: frozenset[str] = frozenset(),
    ) -> None:
        """Warn about keys objectd does not read: ``ignored`` ones are wrangler features.

        An unknown key close to a known or ignored one is refused as its typo.
        """
        for name in table:
            where = f"{key}.{name}" if key else name
            if name in ignored:
                self.warn(f"{self.path}: {where}: not supported by objectd; ignored")
            elif name not in known:
                if (meant := _close_key(name, known | ignored)) is not None:
                    self.fail(where, f"unknown key; did you mean `{meant}`?")
                self.warn(f"{self.path}: {where}: unknown key; ignored")

    def table(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(key, f"expected {self.object_word}, got {_show(value)}")
        return value

    def array(self, value: Any, key: str) -> list[Any]:
        if not isinstance(value, list):
            self.fail(key, f"expected an array, got {_show(value)}")
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            self.fail(key, f"expected a non-empty string, got {_show(value)}")
        return value

    def optional_string(self, value: Any, key: str) -> str | None:
        return None if value is None else self.string(value, key)

    def strings(self, value: Any, key: str) -> tuple[str, ...]:
        items = self.array([] if value is None else value, key)
        return tuple(self.string(item, f"{key}[{index}]") for index, item in enumerate(items))


def _close_key(name: str, keys: Iterable[str]) -> str | None:
    """The key ``name`` is most likely a typo of, if one is close enough."""
    by_lower = {key.lower(): key for key in keys}
    found = difflib.get_close_matches(name.lower(), by_lower, n=1, cutoff=_TYPO_CUTOFF)
    return by_lower[found[0]] if found else None


def _show(value: Any) -> str:
    """The offending value as the user wrote it (JSON spelling), shortened."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _locate(path: Path) -> tuple[Path, tuple[str, ...]]:
    path = path.resolve()
    if path.is_file():
        if path.suffix not in _CONFIG_SUFFIXES:
            raise ConfigError(f"{path}: expected a wrangler file ending in .json, .jsonc or .toml")
        return path, ()
    if not path.is_dir():
        raise ConfigError(f"{path}: no such file or folder")
    found = [path / name for name in _CONFIG_NAMES if (path / name).is_file()]
    if not found:
        raise ConfigError(
            f"{path}: no wrangler.json, wrangler.jsonc or wrangler.toml in this folder"
        )
    return found[0], tuple(other.name for other in found[1:])


_TOML_ERROR = re.compile(r"(?P<what>.*) \(at line (?P<line>\d+), column (?P<column>\d+)\)")
_JSON5_ERROR = re.compile(
    r"<string>:(?P<line>\d+) (?P<what>.*) at column (?P<column>\d+)", re.DOTALL
)


def _read(path: Path, loader: _Loader) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the file: {exc}") from exc
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            if match := _TOML_ERROR.fullmatch(str(exc)):
                what, line, column = match["what"], int(match["line"]), int(match["column"])
            else:  # "... (at end of document)": point at the end
                what = str(exc).removesuffix(" (at end of document)")
                line, column = text.count("\n") + 1, len(text) - text.rfind("\n")
            raise ConfigError(f"{path}:{line}:{column}: invalid TOML: {what}") from exc

    def check_duplicates(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
        # JSON lets a key repeat (the last wins); wrangler does too, so warn only.
        pairs = list(items)
        table = dict(pairs)
        if len(table) < len(pairs):
            names = sorted(
                name for name, count in Counter(k for k, _ in pairs).items() if count > 1
            )
            loader.warn(f"{path}: duplicate keys {names}; the last value of each is used")
        return table

    # json5 reads wrangler.json and wrangler.jsonc alike: it accepts // and /* */
    # comments and trailing commas (everything wrangler's JSONC reader allows),
    # and plain JSON is a subset.
    try:
        return json5.loads(text, object_pairs_hook=check_duplicates)
    except ValueError as exc:
        match = _JSON5_ERROR.fullmatch(str(exc))
        if match is None:  # only "Empty strings are not legal JSON5" has no position
            raise ConfigError(f"{path}:1:1: invalid JSON: {exc}") from exc
        what = match["what"].replace("\n", "\\n")  # 'Unexpected "\n"' on one line
        raise ConfigError(
            f"{path}:{match['line']}:{match['column']}: invalid JSON: {what}"
        ) from exc


def _main(loader: _Loader, root: Path, value: Any, key: str) -> Path:
    if value is None:
        loader.fail(key, 'required: the entry module of the worker, e.g. "src/entry.py"')
    main = (root / loader.string(value, key)).resolve()
    if main.suffix != ".py":
        loader.fail(key, f"expected a Python module (a .py file), got {_show(value)}")
    if not main.is_file():
        loader.fail(key, f"expected an existing .py file, got {_show(value)} ({main} not found)")
    return main


def _date(loader: _Loader, value: Any, key: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime.date):  # an unquoted TOML date
        loader.fail(key, f'expected a quoted "YYYY-MM-DD" string, got the TOML date {value}')
    if isinstance(value, str) and _DATE.fullmatch(value):
        try:
            datetime.date.fromisoformat(value)
        except ValueError:
            loader.fail(key, f"expected a real calendar date, got {_show(value)}")
        return value
    loader.fail(key, f'expected a "YYYY-MM-DD" string, got {_show(value)}')


def _limits(loader: _Loader, value: Any, key: str) -> Limits:
    if value is None:
        return Limits()
    table = loader.table(value, key)
    loader.check_keys(table, key, frozenset({"cpu_ms"}), frozenset({"subrequests"}))
    cpu_ms = table.get("cpu_ms")
    if cpu_ms is None:
        return Limits()
    if isinstance(cpu_ms, bool) or not isinstance(cpu_ms, int) or not 1 <= cpu_ms <= _MAX_CPU_MS:
        loader.fail(
            f"{key}.cpu_ms", f"expected an integer from 1 to {_MAX_CPU_MS}, got {_show(cpu_ms)}"
        )
    return Limits(cpu_ms=cpu_ms)


def _crons(loader: _Loader, value: Any, key: str) -> tuple[str, ...]:
    """``triggers.crons``: Cloudflare's cron expressions, each refused here if it cannot run."""
    if value is None:
        return ()
    table = loader.table(value, key)
    loader.check_keys(table, key, frozenset({"crons"}))
    crons = loader.strings(table.get("crons"), f"{key}.crons")
    for index, text in enumerate(crons):
        at = f"{key}.crons[{index}]"
        if text in crons[:index]:
            loader.fail(at, f"duplicate cron expression {text!r}")
        try:
            CronExpression(text)
        except ValueError as exc:
            loader.fail(at, f"invalid cron expression {text!r}: {exc}")
    return crons


_JSON_VALUE = "a JSON value (string, number, boolean, array, table/object or null)"


def _vars(loader: _Loader, value: Any, key: str) -> dict[str, Any]:
    table = loader.table({} if value is None else value, key)

    def check(item: Any, at: str) -> None:
        if isinstance(item, list):
            for index, element in enumerate(item):
                check(element, f"{at}[{index}]")
        elif isinstance(item, dict):
            for name, element in item.items():
                check(element, f"{at}.{name}")
        elif not (
            item is None
            or isinstance(item, str | int)  # bool is an int
            or (isinstance(item, float) and math.isfinite(item))
        ):
            loader.fail(at, f"expected {_JSON_VALUE}, got {_show(item)}")

    for name, item in table.items():
        if not name:
            loader.fail(key, "variable names must be non-empty")
        check(item, f"{key}.{name}")
    return dict(table)


def _bindings(loader: _Loader, value: Any, key: str) -> tuple[DurableObjectBinding, ...]:
    if value is None:
        return ()
    table = loader.table(value, key)
    loader.check_keys(table, key, frozenset({"bindings"}))
    bindings: dict[str, DurableObjectBinding] = {}
    for index, entry in enumerate(loader.array(table.get("bindings", []), f"{key}.bindings")):
        at = f"{key}.bindings[{index}]"
        entry = loader.table(entry, at)
        loader.check_keys(entry, at, _BINDING_KEYS)
        name = loader.string(entry.get("name"), f"{at}.name")
        if not name.isidentifier() or keyword.iskeyword(name):
            loader.fail(
                f"{at}.name", f"expected a Python identifier (env attribute), got {_show(name)}"
            )
        if name in bindings:
            loader.fail(f"{at}.name", f"duplicate binding name {name!r}; names must be unique")
        script_name = loader.optional_string(entry.get("script_name"), f"{at}.script_name")
        environment = loader.optional_string(entry.get("environment"), f"{at}.environment")
        if environment is not None and script_name is None:
            loader.warn(f"{loader.path}: {at}.environment: has no effect without script_name")
        bindings[name] = DurableObjectBinding(
            name=name,
            class_name=loader.string(entry.get("class_name"), f"{at}.class_name"),
            script_name=script_name,
            environment=environment,
        )
    return tuple(bindings.values())


def _migrations(loader: _Loader, value: Any, key: str) -> tuple[Migration, ...]:
    # Every problem under `migrations` is a MigrationError, a ConfigError too.
    try:
        return _migration_list(loader, [] if value is None else value, key)
    except MigrationError:
        raise
    except ConfigError as exc:
        raise MigrationError(str(exc)) from None


def _migration_list(loader: _Loader, value: Any, key: str) -> tuple[Migration, ...]:
    migrations: list[Migration] = []
    for index, entry in enumerate(loader.array(value, key)):
        at = f"{key}[{index}]"
        migration = _migration(loader, loader.table(entry, at), at)
        if any(earlier.tag == migration.tag for earlier in migrations):
            raise MigrationError(
                f"{loader.path}: {at}.tag: duplicate tag {migration.tag!r}; tags must be unique"
            )
        migrations.append(migration)
    return tuple(migrations)


def _migration(loader: _Loader, entry: dict[str, Any], at: str) -> Migration:
    loader.check_keys(entry, at, _MIGRATION_KEYS)
    tag = loader.string(entry.get("tag"), f"{at}.tag")
    targets: set[str] = set()

    def target(class_name: str, where: str) -> str:
        # Cloudflare refuses a deploy that touches one class twice in one migration;
        # the order of directives inside an entry is unspecified, so it is ambiguous.
        if class_name in targets:
            raise MigrationError(
                f"{loader.path}: {where}: class {class_name!r} cannot be the target "
                "of more than one migration"
            )
        targets.add(class_name)
        return class_name

    def names(directive: str) -> tuple[str, ...]:
        found = loader.strings(entry.get(directive), f"{at}.{directive}")
        return tuple(target(name, f"{at}.{directive}[{i}]") for i, name in enumerate(found))

    def moves(directive: str, fields: tuple[str, ...]) -> list[tuple[str, list[str]]]:
        result = []
        for i, move in enumerate(loader.array(entry.get(directive, []), f"{at}.{directive}")):
            where = f"{at}.{directive}[{i}]"
            move = loader.table(move, where)
            loader.check_keys(move, where, frozenset(fields))
            result.append((where, [loader.string(move.get(f), f"{where}.{f}") for f in fields]))
        return result

    new_classes, new_sqlite_classes = names("new_classes"), names("new_sqlite_classes")
    renamed = tuple(
        RenamedClass(target(old, f"{where}.from"), target(new, f"{where}.to"))
        for where, (old, new) in moves("renamed_classes", ("from", "to"))
    )
    deleted_classes = names("deleted_classes")
    transferred = tuple(
        TransferredClass(old, script, target(new, f"{where}.to"))
        for where, (old, script, new) in moves("transferred_classes", ("from", "from_script", "to"))
    )
    return Migration(tag, new_classes, new_sqlite_classes, renamed, deleted_classes, transferred)


def secrets_from_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The secrets in ``environ``: ``OBJECTD_SECRET_<NAME>=value`` is the secret ``NAME``.

    A prefix, not every variable: the server's own environment (``PATH``, credentials of
    other tools) never reaches the worker unless it is named for it.
    """
    found: dict[str, str] = {}
    for variable, value in environ.items():
        if variable.startswith(SECRET_PREFIX):
            name = variable.removeprefix(SECRET_PREFIX)
            if not name:
                raise ConfigError(f"{SECRET_PREFIX}: the secret's name must follow the prefix")
            found[name] = value
    return found


def _dev_vars_files(root: Path, env: str | None) -> list[Path]:
    """``.dev.vars.<env>`` (with an environment), then ``.dev.vars``: the first that exists."""
    return ([root / f".dev.vars.{env}"] if env is not None else []) + [root / ".dev.vars"]


def _secrets(root: Path, env: str | None, binding_names: set[str]) -> dict[str, str]:
    """``.dev.vars.<env>`` if it exists for ``env``, else ``.dev.vars``, else nothing."""
    for path in _dev_vars_files(root, env):
        if path.is_file():
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{path}: cannot read the file: {exc}") from exc
            secrets = parse_dev_vars(text, path=path)
            if clashes := sorted(secrets.keys() & binding_names):
                raise ConfigError(
                    f"{path}: {clashes[0]}: name is already used by a durable object binding"
                )
            return secrets
    return {}
