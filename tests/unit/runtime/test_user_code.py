"""runtime.user_code: which code the CPU watchdog treats as the project's (finding 2)."""

from __future__ import annotations

from pathlib import Path

import objectd.runtime.host
from objectd.runtime.user_code import UserCode, is_objectd


def code_in(path: Path) -> object:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("def f():\n    pass\n")
    return compile(path.read_text(), str(path), "exec")


def test_the_projects_files_are_its_code_wherever_they_are_imported_from(tmp_path: Path) -> None:
    project = tmp_path / "project"
    user = UserCode([project])
    assert user(code_in(project / "worker.py"))  # type: ignore[arg-type]
    assert user(code_in(project / "lib" / "helpers.py"))  # type: ignore[arg-type]
    # A virtual environment inside the project folder is not the project's code.
    venv = project / ".venv" / "lib" / "python3.11" / "site-packages" / "pkg.py"
    assert not user(code_in(venv))  # type: ignore[arg-type]
    assert not user(code_in(tmp_path / "elsewhere.py"))  # type: ignore[arg-type]
    assert not user(compile("pass", "<string>", "exec"))


def test_objectd_is_never_the_projects_code_even_inside_its_folder() -> None:
    code = objectd.runtime.host.ObjectHost.submit.__code__
    assert is_objectd(code)
    src = Path(objectd.runtime.host.__file__).resolve().parents[2]
    assert not UserCode([src])(code)
