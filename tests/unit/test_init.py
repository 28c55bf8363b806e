"""objectd init: templates written from package data (issue 14 §5).

Serving each written project and running its tests: tests/integration/test_init_server.py.
"""

from __future__ import annotations

import tomllib
from pathlib import Path, PurePosixPath

import pytest
from click.testing import CliRunner

import objectd.templates
from objectd.cli import main
from objectd.config import load_project
from objectd.templates import TEMPLATES, InitError, project_name, write_project

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(objectd.templates.__file__).parent


@pytest.mark.parametrize("template", TEMPLATES)
def test_init_writes_a_project_whose_config_loads(tmp_path: Path, template: str) -> None:
    target = tmp_path / "My Project"
    written = write_project(target, template)
    assert {"wrangler.toml", ".gitignore"} <= {str(path) for path in written}
    assert any(path.parts[0] == "tests" and path.name.startswith("test_") for path in written)
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == sorted(
        str(path) for path in written
    )
    config = load_project(target)
    assert config.name == "my-project"  # the folder's name, as a Worker name
    assert config.main.is_file()
    assert not list(target.rglob("__pycache__"))


@pytest.mark.parametrize(
    ("folder", "name"),
    [("counter", "counter"), ("My_App 2", "my-app-2"), ("---", "app"), ("Ünï", "n")],
)
def test_project_name_is_a_worker_name(tmp_path: Path, folder: str, name: str) -> None:
    assert project_name(tmp_path / folder) == name


def test_init_refuses_a_folder_that_is_not_empty_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = CliRunner().invoke(main, ["init", str(tmp_path), "--template", "chat"])
    assert result.exit_code == 1
    assert f"{tmp_path} is not empty; nothing was written" in result.output
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]


def test_init_refuses_a_file_and_an_unknown_template(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(InitError, match="exists and is not a folder; nothing was written"):
        write_project(tmp_path / "file")
    with pytest.raises(InitError, match="unknown template 'blog'; choose one of counter, chat"):
        write_project(tmp_path / "new", "blog")
    assert not (tmp_path / "new").exists()
    result = CliRunner().invoke(main, ["init", str(tmp_path / "new"), "--template", "blog"])
    assert result.exit_code == 2 and "'blog' is not one of" in result.output


def test_init_command_says_what_it_wrote_and_what_to_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["init", str(tmp_path / "p"), "--template", "fastapi"])
    assert result.exit_code == 0, result.output
    assert "objectd: wrote a fastapi project in" in result.output
    assert "  app.py\n" in result.output
    assert f"objectd dev {tmp_path / 'p'}" in result.output
    assert "uvicorn app:app" in result.output


def test_every_template_file_is_package_data() -> None:
    """A wheel ships only the files pyproject's package-data names (templates have no
    __init__.py, so setuptools does not see them as packages)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["objectd"]
    package = PACKAGE.parent
    files = [
        str(path.relative_to(package))
        for template in TEMPLATES
        for path in (PACKAGE / template).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]
    assert files
    assert [path for path in files if not any(_glob_match(path, p) for p in patterns)] == []
    for template in TEMPLATES:
        assert not (PACKAGE / template / "__init__.py").exists()


def _glob_match(path: str, pattern: str) -> bool:
    """As setuptools' glob matches (``*`` stays within one folder)."""
    parts = PurePosixPath(path)
    return len(parts.parts) == len(PurePosixPath(pattern).parts) and parts.match(pattern)
