"""Group commit: concurrent batches share transactions, yet each succeeds or fails on its own."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import anyio
import pytest

from orchestrator.errors import StateConflictError, StoreError
from orchestrator.state import TaskState
from orchestrator.store import SqliteStore, WriteBatch, open_store

NewBatch = Callable[..., WriteBatch]


@contextmanager
def write_lock_held(db_path: str) -> Iterator[Callable[[], None]]:
    """Hold SQLite's write lock from another connection; yields the function that releases it.

    While the store's writer waits for the lock in `BEGIN IMMEDIATE`, later commits queue up,
    so a test decides exactly which batches end up in one group.
    """
    with closing(sqlite3.connect(db_path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")

        def release() -> None:
            if other.in_transaction:
                other.execute("ROLLBACK")

        try:
            yield release
        finally:
            release()


def schedule(task_id: str) -> WriteBatch:
    batch = WriteBatch()
    batch.set_task_state(("r1", task_id, -1), TaskState.NONE, TaskState.SCHEDULED)
    return batch


async def states(store: SqliteStore) -> dict[str, TaskState]:
    return {ti.task_id: ti.state for ti in await store.list_task_instances("r1")}


async def each_at_once(
    store: SqliteStore, task_ids: list[str], commit: Callable[[str], Awaitable[object]]
) -> tuple[int, int]:
    """`commit(task_id)` for every task at once; the batches and transactions they took."""
    before = store.statistics()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as task_group:
            for task_id in task_ids:
                task_group.start_soon(commit, task_id)
    after = store.statistics()
    return after.batches - before.batches, after.transactions - before.transactions


async def test_200_concurrent_commits_all_land_in_fewer_transactions(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    task_ids = [f"t{index:03}" for index in range(200)]
    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1", tasks=task_ids))
        batches, transactions = await each_at_once(
            store, task_ids, lambda task_id: store.commit(schedule(task_id))
        )
        assert set((await states(store)).values()) == {TaskState.SCHEDULED}
    assert batches == 200
    assert transactions < 200


async def test_a_failing_batch_in_a_group_fails_alone(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    task_ids = [f"t{index:02}" for index in range(30)]
    failures: list[StoreError] = []

    async def commit_bad_batch() -> None:
        batch = WriteBatch()
        batch.save_result(("r1", "t00", -1), '"never stored"')
        batch.set_task_state(("r1", "t00", -1), TaskState.RUNNING, TaskState.SUCCESS)
        try:
            await store.commit(batch)
        except StoreError as error:
            failures.append(error)

    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1", tasks=task_ids))
        before = store.statistics()
        with anyio.fail_after(10), write_lock_held(store.path) as release_lock:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(store.commit, schedule("t29"))
                await anyio.wait_all_tasks_blocked()  # the writer now waits for the lock
                for task_id in task_ids[:29]:
                    task_group.start_soon(store.commit, schedule(task_id))
                task_group.start_soon(commit_bad_batch)
                await anyio.wait_all_tasks_blocked()  # and these 30 are queued behind it
                release_lock()
        after = store.statistics()
        assert set((await states(store)).values()) == {TaskState.SCHEDULED}
        assert await store.get_results("r1") == {}
    assert [type(error) for error in failures] == [StateConflictError]
    # One transaction for the first batch, one for the group of 30 with the failing one in it.
    assert (after.transactions - before.transactions, after.batches - before.batches) == (2, 30)


async def test_a_failed_commit_fails_every_batch_in_its_transaction(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    def refuse_commit(action: int, arg1: str | None, *_: object) -> int:
        denied = action == sqlite3.SQLITE_TRANSACTION and arg1 == "COMMIT"
        return sqlite3.SQLITE_DENY if denied else sqlite3.SQLITE_OK

    failures: list[StoreError] = []

    async def commit(task_id: str) -> None:
        try:
            await store.commit(schedule(task_id))
        except StoreError as error:
            failures.append(error)

    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1"))
        # A COMMIT that fails, as on a full disk: SQLite's own authorizer refuses it.
        writer_connection = store._writer._connection  # type: ignore[union-attr]
        await writer_connection.set_authorizer(refuse_commit)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as task_group:
                for task_id in ("extract", "transform", "load"):
                    task_group.start_soon(commit, task_id)
        await writer_connection.set_authorizer(None)
        assert set((await states(store)).values()) == {TaskState.NONE}
        await store.commit(schedule("load"))  # and the writer carries on
        assert (await states(store))["load"] == TaskState.SCHEDULED
    assert len(failures) == 3
    for error in failures:
        assert "none of its batches were applied" in str(error)
        assert isinstance(error.__cause__, sqlite3.DatabaseError)


async def test_leaving_the_store_commits_what_is_already_queued(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    task_ids = [f"t{index}" for index in range(10)]
    failures: list[StoreError] = []

    async def commit(batch: WriteBatch) -> None:
        try:
            await store.commit(batch)
        except StoreError as error:
            failures.append(error)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as task_group:
            async with open_store(state_dir) as store:
                await store.commit(create_run_batch("r1", tasks=task_ids))
                with write_lock_held(store.path) as release_lock:
                    task_group.start_soon(commit, schedule("t0"))
                    await anyio.wait_all_tasks_blocked()
                    for task_id in task_ids[1:]:
                        task_group.start_soon(commit, schedule(task_id))
                    await anyio.wait_all_tasks_blocked()  # queued behind the first batch
                    release_lock()
                # Leaving the block now: nine batches are still queued for the writer.
    assert failures == []
    async with open_store(state_dir, readonly=True) as store:
        assert set((await states(store)).values()) == {TaskState.SCHEDULED}


async def test_a_cancelled_caller_still_learns_its_batch_committed(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    progress: list[str] = []
    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1"))
        with anyio.CancelScope() as scope:
            scope.cancel()
            await store.commit(schedule("extract"))
            progress.append("commit returned")
            await anyio.lowlevel.checkpoint()  # the cancellation lands here, not mid-commit
            progress.append("never reached")
        assert progress == ["commit returned"]
        assert (await states(store))["extract"] == TaskState.SCHEDULED


async def test_a_failed_batch_applies_nothing_and_fails_again_on_retry(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1"))
        batch = schedule("extract")
        batch.set_task_state(("r1", "load", -1), TaskState.QUEUED, TaskState.RUNNING)
        with pytest.raises(StateConflictError):
            await store.commit(batch)
        # The batch is untouched by the failure: fixing nothing and retrying fails the same way.
        with pytest.raises(StateConflictError):
            await store.commit(batch)
        assert (await states(store))["extract"] == TaskState.NONE
        assert store.statistics().transactions == 1


async def test_a_writer_whose_connection_closed_under_it_fails_the_batch_at_once(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1"))
        writer_connection = store._writer._connection  # type: ignore[union-attr]
        await writer_connection.close()  # not the way a store closes: the writer is not told
        with anyio.fail_after(10), pytest.raises(StoreError, match="was not applied"):
            await store.commit(schedule("extract"))
        assert store.statistics().transactions == 1


async def test_callers_answered_together_commit_their_next_batches_together(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    task_ids = [f"t{index:02}" for index in range(60)]
    steps = [TaskState.NONE, TaskState.SCHEDULED, TaskState.QUEUED, TaskState.RUNNING]

    async def advance(task_id: str) -> None:
        for old, new in itertools.pairwise(steps):
            batch = WriteBatch()
            batch.set_task_state(("r1", task_id, -1), old, new)
            await store.commit(batch)

    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1", tasks=task_ids))
        batches, transactions = await each_at_once(store, task_ids, advance)
        assert set((await states(store)).values()) == {TaskState.RUNNING}
    # The first batch may find the writer idle and go alone, the other 59 making the next
    # group. From then on, the callers one group wakes commit their next batches as one group,
    # with any left behind: not a group of one, then one of 59, round after round.
    assert batches == 180
    assert transactions <= 4
