"""objectd's test kit: a pytest plugin (``objectd.testing.plugin``) and these helpers.

The fixtures (``objectd_env``, ``objectd_self``, ``objectd_clock``, ``objectd_run``)
come with the plugin, which pytest loads by itself once objectd is installed.  The
helpers are awaited inside a test::

    from objectd.testing import run_in_durable_object

    async def test_stored(objectd_env):
        stub = objectd_env.COUNTER.get_by_name("a")
        assert await run_in_durable_object(stub, lambda o, state: state.storage.get("n")) is None

Each Cloudflare ``cloudflare:test`` name also exists in camelCase
(``runInDurableObject``).
"""

from objectd.testing.helpers import (
    evict,
    list_durable_object_ids,
    listDurableObjectIds,
    run_durable_object_alarm,
    run_in_durable_object,
    runDurableObjectAlarm,
    runInDurableObject,
)
from objectd.testing.session import KitClock, SelfClient

__all__ = [
    "KitClock",
    "SelfClient",
    "evict",
    "listDurableObjectIds",
    "list_durable_object_ids",
    "runDurableObjectAlarm",
    "runInDurableObject",
    "run_durable_object_alarm",
    "run_in_durable_object",
]
