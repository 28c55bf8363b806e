"""How a project that does not load is described (runtime/loader.py, issue 15 §2): the
user's file and line, and for an import error the importing lines, without the loader's
and importlib's frames."""

from __future__ import annotations

import sys
from pathlib import Path

from objectd.errors import ConfigError, DataFolderInUseError
from objectd.runtime.loader import describe_load_error, load_module


def _load_error(folder: Path) -> BaseException:
    for name in ("worker", "helper"):
        sys.modules.pop(name, None)
    try:
        load_module(folder / "worker.py")
    except Exception as exc:
        return exc
    finally:
        sys.path.remove(str(folder))
    raise AssertionError("worker.py loaded")


def test_a_syntax_error_shows_its_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "worker.py").write_text("x = 1\ndef broken(:\n    pass\n")
    text = describe_load_error(_load_error(tmp_path), tmp_path)
    assert text.splitlines() == [
        f'  File "{tmp_path / "worker.py"}", line 2',
        "    def broken(:",
        "               ^",
        "SyntaxError: invalid syntax",
    ]


def test_an_import_error_shows_the_importing_lines_only(tmp_path: Path) -> None:
    (tmp_path / "worker.py").write_text('"""Doc."""\n\nimport helper\n')
    (tmp_path / "helper.py").write_text("import no_such_module_here\n")
    text = describe_load_error(_load_error(tmp_path), tmp_path)
    assert text.splitlines()[0] == "Traceback (most recent call last):"
    assert f'File "{tmp_path / "worker.py"}", line 3, in <module>' in text
    assert f'File "{tmp_path / "helper.py"}", line 1, in <module>' in text
    assert text.endswith("ModuleNotFoundError: No module named 'no_such_module_here'")
    assert "importlib" not in text and "loader.py" not in text


def test_a_syntax_error_in_an_imported_file_shows_the_import_and_the_line(tmp_path: Path) -> None:
    (tmp_path / "worker.py").write_text("import helper\n")
    (tmp_path / "helper.py").write_text("\n\nx = = 1\n")
    text = describe_load_error(_load_error(tmp_path), tmp_path)
    assert f'File "{tmp_path / "worker.py"}", line 1, in <module>' in text
    assert f'File "{tmp_path / "helper.py"}", line 3' in text
    assert "SyntaxError" in text and "importlib" not in text


def test_installed_packages_inside_the_project_are_not_its_code(tmp_path: Path) -> None:
    package = tmp_path / ".venv" / "lib" / "python3.11" / "site-packages"
    package.mkdir(parents=True)
    (package / "somelib.py").write_text("raise RuntimeError('somelib is broken')\n")
    (tmp_path / "worker.py").write_text(f"import sys\nsys.path.insert(0, {str(package)!r})\n")
    with (tmp_path / "worker.py").open("a") as worker:
        worker.write("import somelib\n")
    sys.modules.pop("somelib", None)
    try:
        text = describe_load_error(_load_error(tmp_path), tmp_path)
    finally:
        sys.path.remove(str(package))
        sys.modules.pop("somelib", None)
    assert f'File "{tmp_path / "worker.py"}", line 3, in <module>' in text
    assert "somelib.py" not in text
    assert text.endswith("RuntimeError: somelib is broken")


def test_a_config_error_is_its_message() -> None:
    error = ConfigError("/p/wrangler.toml:2:18: invalid TOML")
    assert describe_load_error(error, Path("/p")) == "/p/wrangler.toml:2:18: invalid TOML"


def test_a_data_folder_in_use_is_its_message() -> None:
    """Raised deep in Project.load, it names the folder and the pid: no frames to read."""
    try:
        raise DataFolderInUseError("/d/counter: this data folder is in use (pid 7)")
    except DataFolderInUseError as exc:
        error = exc
    message = "/d/counter: this data folder is in use (pid 7)"
    assert describe_load_error(error, Path("/p")) == message


def test_an_error_outside_the_project_keeps_its_whole_traceback(tmp_path: Path) -> None:
    """Not the user's code at all (a bug in objectd, say): nothing is folded away."""
    try:
        raise RuntimeError("internal")
    except RuntimeError as exc:
        error = exc
    text = describe_load_error(error, tmp_path / "elsewhere")
    assert text.startswith("Traceback (most recent call last):")
    assert __file__ in text and text.endswith("RuntimeError: internal")


def _project(folder: Path, who: str) -> Path:
    folder.mkdir()
    (folder / "helper.py").write_text(f"WHO = {who!r}\nCALLS = []\n")
    (folder / "worker.py").write_text(
        "import helper\nhelper.CALLS.append(1)\nWHO, CALLS = helper.WHO, len(helper.CALLS)\n"
    )
    return folder / "worker.py"


def test_sibling_modules_are_imported_afresh_from_each_projects_folder(tmp_path: Path) -> None:
    """Two projects with a ``helper.py`` each, one after the other in one process (the
    test kit, an embedding program): each load imports its own folder's helper, with
    fresh state, rather than the one left in ``sys.modules`` by the load before."""
    first, second = _project(tmp_path / "p1", "p1"), _project(tmp_path / "p2", "p2")
    try:
        loaded = [load_module(path) for path in (first, second, first)]
    finally:
        for folder in (first.parent, second.parent):
            sys.path.remove(str(folder))
        for name in ("worker", "helper"):
            sys.modules.pop(name, None)
    assert [(module.WHO, module.CALLS) for module in loaded] == [("p1", 1), ("p2", 1), ("p1", 1)]


def test_installed_packages_inside_the_project_are_not_imported_again(tmp_path: Path) -> None:
    package = tmp_path / ".venv" / "lib" / "python3.11" / "site-packages"
    package.mkdir(parents=True)
    (package / "somelib_kept.py").write_text("LOADS = []\n")
    (tmp_path / "worker.py").write_text(
        f"import sys\nif {str(package)!r} not in sys.path: sys.path.insert(0, {str(package)!r})\n"
        "import somelib_kept\nsomelib_kept.LOADS.append(1)\nLOADS = len(somelib_kept.LOADS)\n"
    )
    try:
        loaded = [load_module(tmp_path / "worker.py") for _ in range(2)]
    finally:
        sys.path.remove(str(package))
        sys.path.remove(str(tmp_path))
        sys.modules.pop("somelib_kept", None)
        sys.modules.pop("worker", None)
    assert [module.LOADS for module in loaded] == [1, 2]
