"""How the open-files limit is shared between objects and connections (issue 9 §7)."""

from __future__ import annotations

import resource

import pytest

from objectd.asgi.limits import (
    FD_HEADROOM,
    FDS_PER_OBJECT,
    plan_descriptors,
    raise_open_files_limit,
)


def test_plenty_of_descriptors_keep_every_object_and_give_connections_the_rest() -> None:
    plan = plan_descriptors(1 << 20, 2000)
    assert (plan.backlog, plan.max_live_objects, plan.scaled) == (2048, 2000, False)
    assert plan.max_connections == (1 << 20) - 2048 - FD_HEADROOM - FDS_PER_OBJECT * 2000


def test_this_kind_of_machine_keeps_the_defaults() -> None:
    plan = plan_descriptors(20_000, 2000)
    assert plan.max_live_objects == 2000 and not plan.scaled
    assert plan.max_connections > 10_000  # bench/ws_memory.py opens 10,000 sockets


@pytest.mark.parametrize("open_files", [1024, 4096, 8192])
def test_scarce_descriptors_lower_the_default_object_count(open_files: int) -> None:
    plan = plan_descriptors(open_files, 2000)
    assert plan.scaled and 1 <= plan.max_live_objects < 2000
    used = plan.backlog + FD_HEADROOM + FDS_PER_OBJECT * plan.max_live_objects
    assert used + plan.max_connections <= open_files
    assert plan.max_connections >= FDS_PER_OBJECT * plan.max_live_objects  # half each


def test_given_values_are_kept_or_refused_never_lowered() -> None:
    plan = plan_descriptors(4096, 100, live_objects_given=True)
    assert plan.max_live_objects == 100
    assert plan.max_connections == 4096 - 256 - FD_HEADROOM - FDS_PER_OBJECT * 100
    plan = plan_descriptors(4096, 2000, max_connections=1000)
    assert plan.max_connections == 1000 and plan.scaled
    assert plan.max_live_objects == (4096 - 256 - FD_HEADROOM - 1000) // FDS_PER_OBJECT
    with pytest.raises(ValueError, match=r"2000 live objects .* do not fit"):
        plan_descriptors(4096, 2000, live_objects_given=True)
    with pytest.raises(ValueError, match=r"5000 connections do not fit"):
        plan_descriptors(4096, 10, max_connections=5000)
    with pytest.raises(ValueError, match="do not fit"):
        plan_descriptors(300, 10)


def test_soft_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), hard))
        expected = hard if hard != resource.RLIM_INFINITY else raise_open_files_limit()
        assert raise_open_files_limit() == expected
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (expected, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
