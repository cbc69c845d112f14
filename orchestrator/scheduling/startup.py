"""What the engine does once as it opens: its resources, its DAGs recorded, unfinished runs.

Recovery reads what an earlier process left (see `recovery` for the rules): deferred task
instances wait on their stored triggers again, interrupted tries run again, queued runs
queue again. It all lands in one transaction, committed before the first scheduling step.
Before that, every process an interrupted try left running (its shell's children, setsid
or double-forked ones included) is killed and waited for, found by the try's token
(`execution.try_processes`): two copies of one task never run at once.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from orchestrator.airflow_compat.connections import exported_connections_file
from orchestrator.authoring.dag import DAG
from orchestrator.clock import Clock, SystemClock
from orchestrator.config import Settings
from orchestrator.errors import DamagedRowError
from orchestrator.execution.interface import open_executor
from orchestrator.execution.try_processes import stop_token_holders, try_token
from orchestrator.loading.dagbag import DagBag, load_dag_bag
from orchestrator.loading.importcheck import ImportLimits
from orchestrator.scheduling.active_runs import Transitions
from orchestrator.scheduling.autostart import RunStarter
from orchestrator.scheduling.dispatch import Dispatcher
from orchestrator.scheduling.dispatch import state_identity as identity_of
from orchestrator.scheduling.driven_runs import DrivenRuns
from orchestrator.scheduling.overdue import OverdueAlerts
from orchestrator.scheduling.recovery import rebuild_run
from orchestrator.scheduling.run_edits import fail_damaged_run
from orchestrator.scheduling.scheduler import Scheduler
from orchestrator.state import TaskState
from orchestrator.store import Store, open_store
from orchestrator.store.base import WriteBatch
from orchestrator.store.records import (
    DagRecord,
    ImportErrorRecord,
    RunRecord,
    TaskInstanceRecord,
)
from orchestrator.store.variables import exported_variables_db
from orchestrator.waiting.long_lived import collector_paused

if TYPE_CHECKING:
    from orchestrator.scheduling.engine import Engine

logger = logging.getLogger("orchestrator.engine")


def dags_batch(dagbag: DagBag, now: float) -> WriteBatch:
    """Every loaded DAG and every import error, to write for the CLI and the API to list."""
    batch = WriteBatch()
    for dag_id, dag in dagbag.dags.items():
        fileloc = dagbag.files.get(dag_id, dag.site.file)
        record = DagRecord(
            dag_id=dag_id,
            fileloc=fileloc,
            description=dag.description,
            is_paused=dag.is_paused_upon_creation,  # kept only if the row is new
            updated_at=now,
        )
        batch.upsert_dag(record)
    batch.replace_import_errors(
        [
            ImportErrorRecord(
                fileloc=error.file or "", line=error.line, message=error.message, recorded_at=now
            )
            for error in dagbag.errors
        ]
    )
    return batch


async def load_starting_state(
    store: Store, starter: RunStarter, overdue: OverdueAlerts, scheduler: Scheduler
) -> None:
    """What the run starter and the overdue alerts keep in the store, read back at start;
    the DAGs recorded as paused are paused in the scheduler too."""
    await starter.load(store)
    await overdue.load(store)
    for dag_id in starter.paused:
        scheduler.set_paused(dag_id, True)


async def pause_new_dags(
    store: Store, loaded: Sequence[DAG], starter: RunStarter, scheduler: Scheduler
) -> None:
    """A DAG first seen on a reload that asks to start paused is paused before it starts a run."""
    known = {record.dag_id for record in await store.list_dags()}
    for dag in loaded:
        if dag.is_paused_upon_creation and dag.dag_id not in known:
            starter.paused.add(dag.dag_id)
            scheduler.set_paused(dag.dag_id, True)


async def recover_runs(
    store: Store,
    dagbag: DagBag,
    parts: tuple[Scheduler, DrivenRuns, RunStarter, Dispatcher],
    clock: Clock,
) -> Transitions | None:
    """Hand the runs an earlier process left unfinished to the scheduler: the transaction that
    settles them, or None if there are none.

    An interrupted try counts only if its code had begun: the scheduler reads the tries' marks
    (`begun_tries`) first. `open_engine` forgets them once this is committed.
    """
    scheduler, driven, starter, dispatch = parts
    scheduler.begun_tries = await anyio.to_thread.run_sync(dispatch.begun.read)
    records = await store.list_unfinished_runs()
    if not records:
        return None
    tx = Transitions(clock.now())
    with collector_paused():  # it builds every waiting sensor: long-lived, and many
        await _recover(store, dagbag, (scheduler, driven, starter), tx, dispatch.identity, records)
    return tx


async def _recover(
    store: Store,
    dagbag: DagBag,
    parts: tuple[Scheduler, DrivenRuns, RunStarter],
    tx: Transitions,
    state_identity: str,
    records: list[RunRecord],
) -> None:
    scheduler, driven, starter = parts
    triggers = {row.key: row for row in await store.list_triggers()}
    instances = {
        record.run_id: await store.list_task_instances(record.run_id) for record in records
    }
    await stop_interrupted_tries(instances.values(), state_identity)
    for record in records:
        dag = dagbag.dags.get(record.dag_id)
        if dag is None:
            logger.warning(
                "run %s of DAG %s is unfinished, but the DAG is not loaded",
                record.run_id,
                record.dag_id,
            )
            continue
        results = await store.get_results(record.run_id)
        try:
            run = rebuild_run(record, dag, driven.plan(dag), instances[record.run_id], results)
        except DamagedRowError as error:
            _fail_damaged(record, instances[record.run_id], str(error), tx)
            continue
        scheduler.recover(run, triggers, tx)
        driven.track(record.run_id, dag)
        starter.note_unfinished(record)


def _fail_damaged(
    record: RunRecord, instances: list[TaskInstanceRecord], reason: str, tx: Transitions
) -> None:
    """One run that cannot be read fails; the daemon starts and the other runs go on."""
    logger.error(
        "run %s of DAG %s cannot be recovered, so it fails: %s (`orchestrator db check` "
        "lists every damaged row)",
        record.run_id,
        record.dag_id,
        reason,
    )
    fail_damaged_run(record, instances, reason, tx)


async def stop_interrupted_tries(
    runs: Iterable[list[TaskInstanceRecord]], state_identity: str
) -> None:
    """Kill what the tries the last daemon left running still run, and wait until it is gone."""
    tokens = [
        try_token(state_identity, *row.key, row.try_number)
        for rows in runs
        for row in rows
        if row.state in (TaskState.RUNNING, TaskState.QUEUED) and row.try_number
    ]
    if tokens:
        killed = await anyio.to_thread.run_sync(stop_token_holders, tokens)
        if killed:
            logger.warning(
                "killed %d process(es) left running by %d interrupted tries (pids %s)",
                len(killed),
                len(tokens),
                ", ".join(map(str, killed)),
            )


@asynccontextmanager
async def open_engine(
    engine_class: type[Engine],
    settings: Settings,
    *,
    dagbag: DagBag | None,
    clock: Clock | None,
    recover: bool,
    start_runs: bool,
) -> AsyncIterator[Engine]:
    """`Engine.open`: the store, the executor and one task group for everything the engine
    runs (its loop, its timers, tries, triggers), closed in that order on the way out.

    The store's database and the connections file are named in the environment meanwhile, so
    `Variable.get` and `BaseHook.get_connection` in DAG files and in the workers (which inherit
    it) read this engine's variables and connections."""
    with (
        exported_variables_db(settings.state_dir),
        exported_connections_file(settings.connections_file),
    ):
        if dagbag is None:  # in a thread: the files' checks and imports never block the loop
            load = partial(
                load_dag_bag,
                settings.dags_folder,
                pools=settings.pool_slots(),
                limits=ImportLimits.of(settings),
                state_dir=settings.state_dir,
            )
            dagbag = await anyio.to_thread.run_sync(load)
        try:
            async with (
                open_store(settings.state_dir, synchronous=settings.synchronous) as store,
                open_executor(
                    settings,
                    state_identity=identity_of(settings),
                    prestart=workers_to_prestart(settings, dagbag),
                ) as executor,
                anyio.create_task_group() as tg,
            ):
                engine = engine_class(
                    settings=settings,
                    dagbag=dagbag,
                    store=store,
                    executor=executor,
                    clock=clock or SystemClock(),
                    task_group=tg,
                )
                await engine._start(recover=recover, start_runs=start_runs)
                if recover:  # what the recovery read of the tries' marks is committed
                    engine._dispatch.begun.clear()
                tg.start_soon(engine._schedule_forever)
                tg.start_soon(engine._timers.run)
                engine.watchdog.start()
                try:
                    yield engine
                finally:
                    engine.watchdog.stop()
                    tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise lone_error(group) from None


def workers_to_prestart(settings: Settings, dagbag: DagBag) -> int:
    """Warm local worker processes only if some task will need one."""
    if settings.executor != "local":
        return 0
    for dag in dagbag.dags.values():
        for task in dag.tasks.values():
            in_process = task.options.in_process
            if not task.is_async and not (
                settings.in_process if in_process is None else in_process
            ):
                return settings.slots
    return 0


def lone_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one real error inside a task group's exception group, so callers can catch it.

    A `StoreError` from a commit or a `DagNotFoundError` from the caller's block is what the
    user must see, not an `ExceptionGroup` around it; several errors stay grouped.
    """
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop()
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        else:
            leaves.append(error)
    return leaves[0] if len(leaves) == 1 else group
