"""The counter example under the test kit: `bash scripts/test examples/counter`."""

import pytest

from objectd.testing import evict, list_durable_object_ids, run_in_durable_object

pytestmark = pytest.mark.objectd(project="..")  # the project: this folder's parent


async def test_increment_and_get(objectd_self):
    for expected in ("1", "2"):
        response = await objectd_self.fetch("https://example.com/increment")
        assert await response.text() == expected
    response = await objectd_self.fetch("https://example.com/decrement")
    assert await response.text() == "1"
    response = await objectd_self.fetch("https://example.com/get")
    assert response.status == 200
    assert await response.text() == "1"


async def test_unknown_path_is_404(objectd_self):
    response = await objectd_self.fetch("https://example.com/nope")
    assert response.status == 404


async def test_each_test_starts_from_zero(objectd_self):
    response = await objectd_self.fetch("https://example.com/get")
    assert await response.text() == "0"  # the increments above were another test's storage


async def test_the_value_is_stored_and_survives_eviction(objectd_self, objectd_env):
    await objectd_self.fetch("https://example.com/increment")
    stub = objectd_env.COUNTER.get(objectd_env.COUNTER.idFromName("global"))
    stored = await run_in_durable_object(stub, lambda counter, state: state.storage.get("value"))
    assert stored == 1
    before = await run_in_durable_object(stub, lambda counter, state: counter)
    await evict(stub)  # the constructor runs again and loads the value from storage
    assert await run_in_durable_object(stub, lambda counter, state: counter) is not before
    response = await objectd_self.fetch("https://example.com/increment")
    assert await response.text() == "2"
    assert await list_durable_object_ids(objectd_env.COUNTER) == [stub.id]


async def test_an_idle_counter_is_evicted_and_keeps_its_value(
    objectd_self, objectd_env, objectd_clock
):
    await objectd_self.fetch("https://example.com/increment")
    stub = objectd_env.COUNTER.getByName("global")
    before = await run_in_durable_object(stub, lambda counter, state: counter)
    await objectd_clock.advance(5)
    assert await run_in_durable_object(stub, lambda counter, state: counter) is before
    await objectd_clock.advance(60)  # idle for a minute: evicted on the way, deterministically
    assert await run_in_durable_object(stub, lambda counter, state: counter) is not before
    response = await objectd_self.fetch("https://example.com/get")
    assert await response.text() == "1"


def test_a_plain_def_test(objectd_self, objectd_run):
    response = objectd_run(objectd_self.fetch, "https://example.com/increment")
    assert objectd_run(response.text()) == "1"
