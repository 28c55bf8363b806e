"""The objectd command's own parsing: sizes given to --max-header-bytes and --body-buffer."""

from __future__ import annotations

import click
import pytest

from objectd.cli import ByteSize


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("131072", 131072),
        ("128KiB", 128 * 1024),
        ("128k", 128 * 1024),
        ("256 MiB", 256 << 20),
        ("256mb", 256 << 20),
        ("1GiB", 1 << 30),
        ("7b", 7),
        (4096, 4096),
    ],
)
def test_sizes(text: str | int, size: int) -> None:
    assert ByteSize().convert(text, None, None) == size


@pytest.mark.parametrize("text", ["", "0", "-1", "1.5MiB", "12TiB", "MiB", "5 ib", "ten"])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(click.BadParameter, match="is not a size"):
        ByteSize().convert(text, None, None)
