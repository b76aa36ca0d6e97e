"""broker.failpoints in process: armed per broker through the current_node
context variable; unarmed, crash_point is one check of a module global."""
from __future__ import annotations

import asyncio
import contextvars

import pytest

from broker import failpoints
from objectstore import StoreUnavailable


@pytest.fixture(autouse=True)
def _disarm():
    yield
    failpoints.disarm_all()


def as_node(node: int | None, fn, *args):
    ctx = contextvars.copy_context()
    ctx.run(failpoints.current_node.set, node)
    return ctx.run(fn, *args)


def test_unarmed_is_one_check():
    assert failpoints._on is (failpoints._AT is not None)
    failpoints.crash_point("upload.before_put")          # nothing armed: nothing happens
    failpoints.arm("x", None)
    assert failpoints._on
    failpoints.disarm_all()
    assert failpoints._on is (failpoints._AT is not None)
    failpoints.crash_point("x")


def test_armed_for_one_node_times_and_actions():
    armed = failpoints.arm("upload.after_put", 2)
    as_node(1, failpoints.crash_point, "upload.after_put")
    as_node(None, failpoints.crash_point, "upload.after_put")
    failpoints.crash_point("upload.before_put")
    with pytest.raises(failpoints.InjectedFailure, match="node 2"):
        as_node(2, failpoints.crash_point, "upload.after_put")
    as_node(2, failpoints.crash_point, "upload.after_put")   # times=1: spent
    assert armed.hits == 1
    assert issubclass(failpoints.InjectedFailure, BaseException)
    assert not issubclass(failpoints.InjectedFailure, Exception)   # not swallowed by recovery

    failpoints.arm("a", None, StoreUnavailable, times=2)
    for node in (1, 3):
        with pytest.raises(StoreUnavailable):
            as_node(node, failpoints.crash_point, "a")
    failpoints.crash_point("a")
    calls = []
    failpoints.arm("b", 3, calls.append, times=None)
    for _ in range(3):
        as_node(3, failpoints.crash_point, "b")
    assert calls == ["b", "b", "b"]


async def test_tasks_inherit_the_node():
    """A task created in a broker's context (as the rig starts it) carries its
    node id, and so do the tasks it creates in turn."""
    failpoints.arm("p", 7, times=None)

    async def inner() -> None:
        failpoints.crash_point("p")

    async def outer() -> None:
        await asyncio.get_running_loop().create_task(inner())
    ctx = contextvars.copy_context()
    ctx.run(failpoints.current_node.set, 7)
    with pytest.raises(failpoints.InjectedFailure):
        await asyncio.get_running_loop().create_task(outer(), context=ctx)
    await outer()                                        # the test's own context: node None
