"""The engine end to end on the in-process executor: real store, real scheduler, no sleeps."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from helpers import bag_of
from orchestrator import DAG, BaseOperator, Fail, Skip, TaskContext, TriggerRule, dag, task
from orchestrator.authoring.references import ParamRef
from orchestrator.changes import Change, RunChanged, TaskChanged
from orchestrator.clock import FakeClock
from orchestrator.config import Settings
from orchestrator.errors import DagNotFoundError, RunError
from orchestrator.execution.begun_tries import BegunTries
from orchestrator.execution.results import decode_result
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState, TaskState
from orchestrator.store.records import RunRecord, TaskInstanceRecord

SettingsFactory = Callable[..., Settings]


async def run_once(
    settings: Settings, dag: DAG, conf: dict[str, Any] | None = None
) -> tuple[RunRecord, dict[str, TaskInstanceRecord], dict[str, Any]]:
    """Trigger one run, wait for it, return the run, its instances by task id, its results."""
    async with Engine.open(settings, dagbag=bag_of(dag)) as engine:
        with anyio.fail_after(20):
            run_id = await engine.trigger(dag.dag_id, conf)
            record = await engine.wait(run_id)
        instances = await engine.store.list_task_instances(run_id)
        results = await engine.store.get_results(run_id)
    named = {
        ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]": ti for ti in instances
    }
    values = {
        (task_id if index < 0 else f"{task_id}[{index}]"): decode_result(text)
        for (task_id, index), text in results.items()
    }
    return record, named, values


def states(instances: dict[str, TaskInstanceRecord]) -> dict[str, str]:
    return {name: str(ti.state) for name, ti in instances.items()}


@task
def one() -> int:
    return 1


@task
def add(x: int, y: int = 10) -> int:
    return x + y


@task
def boom() -> None:
    raise ValueError("bad row 3")


async def test_a_chain_passes_values_downstream(make_settings: SettingsFactory) -> None:
    with DAG("chain") as dag:
        add(add(one(), y=2), y=3)
    record, instances, results = await run_once(make_settings(), dag)
    assert record.state is RunState.SUCCESS
    assert results == {"one": 1, "add": 3, "add__1": 6}
    assert all(ti.try_number == 1 for ti in instances.values())


async def test_an_async_task_runs_in_the_loop(make_settings: SettingsFactory) -> None:
    @task
    async def fetch(x: int) -> dict[str, int]:
        await anyio.lowlevel.checkpoint()
        return {"x": x}

    with DAG("asyncdag") as dag:
        add(fetch(one())["x"])
    record, _, results = await run_once(make_settings(), dag)
    assert record.state is RunState.SUCCESS
    assert results["add"] == 11


async def test_expand_fans_out_and_fans_in(make_settings: SettingsFactory) -> None:
    @task
    def shards(context: TaskContext) -> list[int]:
        return list(range(context.conf["n"]))

    @task
    def total(values: list[int]) -> int:
        return sum(values)

    with DAG("fan") as dag:
        total(add.partial(y=100).expand(x=shards()))
    record, instances, results = await run_once(make_settings(), dag, {"n": 5})
    assert record.state is RunState.SUCCESS
    assert [results[f"add[{i}]"] for i in range(5)] == [100, 101, 102, 103, 104]
    assert results["total"] == 510
    assert len([name for name in instances if name.startswith("add[")]) == 5


async def test_tries_log_side_by_side_in_one_folder_per_run(
    make_settings: SettingsFactory,
) -> None:
    # No folder per task: a mkdir per task cost more than the try's file (bench/).
    @task
    def shards() -> list[int]:
        print("two shards")
        return [1, 2]

    with DAG("logged") as dag:
        add.expand(x=shards())
    settings = make_settings()
    record, _, _ = await run_once(settings, dag)
    assert record.state is RunState.SUCCESS
    (run_folder,) = (settings.logs_dir / "logged").iterdir()
    assert run_folder.name == record.run_id
    names = sorted(path.name for path in run_folder.iterdir())
    assert names == ["shards.try-1.log"]  # a log is made by its first byte: `add` is quiet
    assert (run_folder / "shards.try-1.log").read_text() == "two shards\n"
    # each try marked that its code began, for a recovery to count it (`begun_tries`)
    marks = BegunTries(settings.state_dir).read()
    logs = ["add.0.try-1.log", "add.1.try-1.log", "shards.try-1.log"]
    assert marks == {str(run_folder / name) for name in logs}


async def test_expanding_over_an_empty_list_skips_the_task_and_its_downstream(
    make_settings: SettingsFactory,
) -> None:
    @task
    def nothing() -> list[int]:
        return []

    with DAG("empty") as dag:
        add(add.expand(x=nothing()))
    record, instances, _ = await run_once(make_settings(), dag)
    assert record.state is RunState.SUCCESS
    assert states(instances) == {"nothing": "success", "add": "skipped", "add__1": "skipped"}
    assert instances["add"].error == "expanded over an empty list"


async def test_expanding_over_a_non_list_fails_clearly(make_settings: SettingsFactory) -> None:
    with DAG("notalist") as dag:
        add.expand(x=one())
    record, instances, _ = await run_once(make_settings(), dag)
    assert record.state is RunState.FAILED
    assert instances["add"].state is TaskState.FAILED
    assert "must be a list" in (instances["add"].error or "")


async def test_a_failure_marks_downstream_and_cleanup_still_runs(
    make_settings: SettingsFactory,
) -> None:
    @task(trigger_rule=TriggerRule.ALL_DONE)
    def cleanup() -> str:
        return "cleaned"

    @task(trigger_rule="one_failed")
    def alert() -> str:
        return "alerted"

    with DAG("failing") as dag:
        failed = boom()
        failed >> add(one())
        failed >> [cleanup(), alert()]
    record, instances, results = await run_once(make_settings(), dag)
    assert states(instances) == {
        "boom": "failed",
        "one": "success",
        "add": "upstream_failed",
        "cleanup": "success",
        "alert": "success",
    }
    assert instances["boom"].error == "ValueError: bad row 3"
    assert results["cleanup"] == "cleaned"
    assert record.state is RunState.FAILED  # a leaf (add) could not run


async def test_branch_follows_one_path_and_skips_the_other(make_settings: SettingsFactory) -> None:
    @task.branch
    def choose(context: TaskContext) -> str:
        return "big" if context.conf["size"] > 10 else "small"

    @task
    def big() -> str:
        return "big"

    @task
    def small() -> str:
        return "small"

    @task(trigger_rule="none_failed")
    def join() -> str:
        return "joined"

    with DAG("branchy") as dag:
        chosen = choose()
        chosen >> [big(), small()] >> join()
    record, instances, _ = await run_once(make_settings(), dag, {"size": 50})
    assert record.state is RunState.SUCCESS
    assert states(instances) == {
        "choose": "success",
        "big": "success",
        "small": "skipped",
        "join": "success",
    }
    assert instances["small"].error == "not chosen by choose"


async def test_a_branch_skipping_whole_downstream_skips_all_done_tasks_below(
    make_settings: SettingsFactory,
) -> None:
    @task.branch(skip_whole_downstream=True)
    def gate() -> list[str]:
        return ["kept"]

    @task(trigger_rule="all_done")
    def report() -> str:
        return "reported"

    @task(trigger_rule="all_done")
    def shared() -> str:
        return "shared"

    with DAG("cone") as dag:
        chosen = gate()
        dropped, kept = add.override(task_id="dropped")(1), add.override(task_id="kept")(2)
        chosen >> [dropped, kept]
        dropped >> report()
        [dropped, kept] >> shared()
    record, instances, _ = await run_once(make_settings(), dag)
    assert record.state is RunState.SUCCESS
    assert states(instances) == {
        "gate": "success",
        "dropped": "skipped",
        "kept": "success",
        "report": "skipped",  # below the unchosen task only: skipped whatever its rule
        "shared": "success",  # a chosen path reaches it too: it follows its rule
    }
    assert instances["report"].error == "not chosen by gate"


async def test_a_branch_naming_an_unknown_task_fails(make_settings: SettingsFactory) -> None:
    @task.branch
    def choose() -> str:
        return "nowhere"

    with DAG("badbranch") as dag:
        choose() >> add(1)
    record, instances, _ = await run_once(make_settings(), dag)
    assert record.state is RunState.FAILED
    assert "'nowhere'" in (instances["choose"].error or "")
    assert "choose from: add" in (instances["choose"].error or "")


async def test_skip_marks_the_task_and_its_downstream_skipped(
    make_settings: SettingsFactory,
) -> None:
    @task
    def maybe() -> int:
        raise Skip("nothing new today")

    with DAG("skippy") as dag:
        add(maybe())
    record, instances, _ = await run_once(make_settings(), dag)
    assert states(instances) == {"maybe": "skipped", "add": "skipped"}
    assert record.state is RunState.SUCCESS


async def test_params_default_and_conf_overrides_them(make_settings: SettingsFactory) -> None:
    @task
    def show(context: TaskContext) -> dict[str, Any]:
        return {"params": context.params, "conf": context.conf, "try": context.try_number}

    with DAG("params", params={"epochs": 3, "lr": 0.1}) as dag:
        show()
    _, _, results = await run_once(make_settings(), dag, {"epochs": 5, "extra": True})
    assert results["show"] == {
        "params": {"epochs": 5, "lr": 0.1},
        "conf": {"epochs": 5, "extra": True},
        "try": 1,
    }


async def test_a_missing_key_in_an_output_fails_only_that_task(
    make_settings: SettingsFactory,
) -> None:
    @task
    def record() -> dict[str, int]:
        return {"a": 1}

    with DAG("missingkey") as dag:
        add(record()["b"])
    run, instances, _ = await run_once(make_settings(), dag)
    assert run.state is RunState.FAILED
    assert instances["add"].error == "cannot resolve the task's inputs: KeyError: 'b'"


async def test_a_result_that_is_not_json_fails_the_task(make_settings: SettingsFactory) -> None:
    @task
    def opaque() -> object:
        return object()

    with DAG("opaque") as dag:
        opaque()
    run, instances, _ = await run_once(make_settings(), dag)
    assert run.state is RunState.FAILED
    assert "not JSON-serialisable" in (instances["opaque"].error or "")


async def test_bad_run_requests_are_refused(make_settings: SettingsFactory) -> None:
    with DAG("refuse") as dag:
        one()
    async with Engine.open(make_settings(), dagbag=bag_of(dag)) as engine:
        with pytest.raises(DagNotFoundError, match="did you mean 'refuse'"):
            await engine.trigger("refuses")
        with pytest.raises(RunError, match="must be a JSON object, got list"):
            await engine.trigger("refuse", [1, 2])  # type: ignore[arg-type]
        with pytest.raises(RunError, match="JSON-serialisable"):
            await engine.trigger("refuse", {"when": object()})
        with pytest.raises(RunError, match="no run with id"):
            await engine.wait("nope")
        assert await engine.store.list_runs() == []


async def collect_until(
    stream: anyio.abc.ObjectReceiveStream[Change],
    done: Callable[[Change], bool],
    into: list[Change],
) -> None:
    async for change in stream:
        into.append(change)
        if done(change):
            return


async def test_retries_wait_for_the_backoff_on_the_injected_clock(
    make_settings: SettingsFactory,
) -> None:
    attempts: list[int] = []

    @task(retries=2, retry_delay=30, retry_exponential_backoff=True)
    def flaky(context: TaskContext) -> str:
        attempts.append(context.try_number)
        if context.try_number < 3:
            raise ConnectionError("database away")
        return "ok"

    with DAG("flaky") as dag:
        flaky()
    clock = FakeClock()
    retried: list[TaskChanged] = []
    async with (
        Engine.open(make_settings(), dagbag=bag_of(dag), clock=clock) as engine,
        engine.subscribe() as changes,
    ):
        with anyio.fail_after(20):
            run_id = await engine.trigger("flaky")
            for expected_delay in (30, 60):
                async for change in changes:
                    if isinstance(change, TaskChanged) and change.state is TaskState.UP_FOR_RETRY:
                        retried.append(change)
                        break
                instances = await engine.store.list_task_instances(run_id)
                assert instances[0].next_retry_at == clock.now() + expected_delay
                while clock.sleepers == 0:  # the engine is going to sleep on the backoff
                    await anyio.lowlevel.checkpoint()
                clock.advance(expected_delay)
            record = await engine.wait(run_id)
        tries = await engine.store.list_tries(run_id, "flaky")
    assert record.state is RunState.SUCCESS
    assert attempts == [1, 2, 3]
    assert [t.state for t in tries] == [TaskState.UP_FOR_RETRY, TaskState.UP_FOR_RETRY, "success"]
    assert [t.error for t in tries] == ["ConnectionError: database away"] * 2 + [None]
    assert len(retried) == 2


async def test_callbacks_are_called_with_the_context(make_settings: SettingsFactory) -> None:
    seen: list[tuple[str, str, int]] = []
    everything_called = anyio.Event()

    def remember(kind: str) -> Callable[[TaskContext], None]:
        def callback(context: TaskContext) -> None:
            seen.append((kind, context.task_id, context.try_number))
            if len(seen) == 3:
                everything_called.set()

        return callback

    @task(retries=1, retry_delay=0, on_retry=remember("retry"), on_failure=remember("failure"))
    def always_fails() -> None:
        raise RuntimeError("no")

    @task(on_success=remember("success"))
    def fine() -> int:
        return 1

    with DAG("callbacks") as dag:
        always_fails()
        fine()
    async with Engine.open(make_settings(), dagbag=bag_of(dag)) as engine:
        with anyio.fail_after(20):
            await engine.wait(await engine.trigger("callbacks"))
            await everything_called.wait()
    assert sorted(seen) == [
        ("failure", "always_fails", 2),
        ("retry", "always_fails", 1),
        ("success", "fine", 1),
    ]


async def test_a_failing_callback_does_not_hurt_the_engine(make_settings: SettingsFactory) -> None:
    def broken(context: TaskContext) -> None:
        raise RuntimeError("callback bug")

    @task(on_success=broken)
    def fine() -> int:
        return 1

    with DAG("badcallback") as dag:
        add(fine())
    record, _, results = await run_once(make_settings(), dag)
    assert record.state is RunState.SUCCESS
    assert results["add"] == 11


def track_concurrency(dag_name: str, width: int, **options: Any) -> tuple[DAG, list[int]]:
    """A DAG of `width` independent tasks that record how many ran at the same time."""
    lock = threading.Lock()
    running = [0]
    peaks: list[int] = []

    @task(**options)
    async def work(index: int) -> int:
        with lock:
            running[0] += 1
            peaks.append(running[0])
        for _ in range(5):  # give other tasks every chance to start alongside
            await anyio.lowlevel.checkpoint()
        with lock:
            running[0] -= 1
        return index

    with DAG(dag_name, max_active_tasks=16) as dag:
        for index in range(width):
            work.override(task_id=f"work_{index}")(index)
    return dag, peaks


async def test_a_pool_limits_how_many_tasks_run_at_once(make_settings: SettingsFactory) -> None:
    dag, peaks = track_concurrency("pooled", 6, pool="gpu")
    record, _, _ = await run_once(make_settings(slots=4, pools={"gpu": 1}), dag)
    assert record.state is RunState.SUCCESS
    assert len(peaks) == 6
    assert max(peaks) == 1


async def test_slots_limit_concurrency(make_settings: SettingsFactory) -> None:
    dag, peaks = track_concurrency("slotted", 8)
    record, _, _ = await run_once(make_settings(slots=3), dag)
    assert record.state is RunState.SUCCESS
    assert max(peaks) == 3  # all three slots were used, never more


async def test_max_active_tasks_limits_a_dag(make_settings: SettingsFactory) -> None:
    dag, peaks = track_concurrency("capped", 6)
    dag.max_active_tasks = 2
    record, _, _ = await run_once(make_settings(slots=4), dag)
    assert record.state is RunState.SUCCESS
    assert max(peaks) == 2


async def test_priority_weight_orders_ready_tasks(make_settings: SettingsFactory) -> None:
    order: list[str] = []

    @task
    def note(name: str) -> None:
        order.append(name)

    with DAG("priorities") as dag:
        for name, weight in (("low", 1), ("high", 10), ("mid", 5)):
            note.override(task_id=name, priority_weight=weight)(name)
    record, _, _ = await run_once(make_settings(slots=1), dag)
    assert record.state is RunState.SUCCESS
    assert order == ["high", "mid", "low"]


async def test_max_active_runs_queues_the_rest(make_settings: SettingsFactory) -> None:
    with DAG("serial", max_active_runs=1) as dag:
        add(one())
    running: set[str] = set()
    overlap: list[int] = []
    async with (
        Engine.open(make_settings(), dagbag=bag_of(dag)) as engine,
        engine.subscribe() as changes,
    ):
        with anyio.fail_after(20):
            run_ids = [await engine.trigger("serial") for _ in range(4)]
            finished = 0
            async for change in changes:
                if isinstance(change, RunChanged):
                    if change.state is RunState.RUNNING:
                        running.add(change.run_id)
                    elif change.state.finished:
                        running.discard(change.run_id)
                        finished += 1
                    overlap.append(len(running))
                    if finished == 4:
                        break
            records = [await engine.wait(run_id) for run_id in run_ids]
    assert max(overlap) == 1
    assert all(r.state is RunState.SUCCESS for r in records)
    started = sorted(records, key=lambda r: r.started_at or 0)
    assert [r.run_id for r in started] == run_ids  # admitted in the order they were queued


async def test_cancel_stops_running_tasks_and_marks_the_rest(
    make_settings: SettingsFactory,
) -> None:
    started = anyio.Event()

    @task
    async def forever() -> None:
        started.set()
        await anyio.Event().wait()

    with DAG("cancellable") as dag:
        add(forever())
    async with Engine.open(make_settings(), dagbag=bag_of(dag)) as engine:
        with anyio.fail_after(20):
            run_id = await engine.trigger("cancellable")
            await started.wait()
            await engine.cancel(run_id)
            record = await engine.wait(run_id)
            await engine.cancel(run_id)  # cancelling a finished run is a no-op
        instances = {ti.task_id: ti for ti in await engine.store.list_task_instances(run_id)}
    assert record.state is RunState.CANCELLED
    assert instances["forever"].state is TaskState.CANCELLED
    assert instances["add"].state is TaskState.CANCELLED


async def test_every_change_is_announced_after_it_is_committed(
    make_settings: SettingsFactory,
) -> None:
    with DAG("announced") as dag:
        add(one())
    seen: list[Change] = []
    async with (
        Engine.open(make_settings(), dagbag=bag_of(dag)) as engine,
        engine.subscribe() as changes,
    ):
        with anyio.fail_after(20):
            run_id = await engine.trigger("announced")
            await collect_until(
                changes,
                lambda c: isinstance(c, RunChanged) and c.state.finished,
                seen,
            )
            record = await engine.store.get_run(run_id)
    assert record is not None and record.state is RunState.SUCCESS
    task_states = [(c.task_id, str(c.state)) for c in seen if isinstance(c, TaskChanged)]
    assert task_states == [
        ("one", "scheduled"),
        ("one", "queued"),
        ("one", "running"),
        ("one", "success"),
        ("add", "scheduled"),
        ("add", "queued"),
        ("add", "running"),
        ("add", "success"),
    ]


async def test_an_error_in_the_callers_block_reaches_it_unwrapped(
    make_settings: SettingsFactory,
) -> None:
    with DAG("unwrapped") as dag:
        one()
    with pytest.raises(DagNotFoundError):
        async with Engine.open(make_settings(), dagbag=bag_of(dag)) as engine:
            await engine.trigger("not_there")


async def test_fail_ends_the_task_at_once_whatever_retries_are_left(
    make_settings: SettingsFactory,
) -> None:
    @task(retries=3, retry_delay=0)
    def validate() -> None:
        raise Fail("the input file has no header: retrying cannot help")

    with DAG("no_retry") as dag:
        validate()
    record, instances, _ = await run_once(make_settings(), dag)
    assert record.state is RunState.FAILED
    assert instances["validate"].state is TaskState.FAILED
    assert instances["validate"].try_number == 1
    assert "the input file has no header" in (instances["validate"].error or "")


class Greet(BaseOperator):
    def __init__(self, *, who: Any, count: Any, **options: Any) -> None:
        super().__init__(**options)
        self.who = who
        self.count = count

    def execute(self, context: TaskContext) -> str:
        return f"hello {self.who} x{self.count}"


async def test_an_operator_gets_dag_params_and_outputs_resolved(
    make_settings: SettingsFactory,
) -> None:
    @dag
    def greeting(who: str = "world") -> None:
        Greet(task_id="greet", who=who, count=one())

    pipeline = greeting()
    pipeline.validate()
    assert pipeline.tasks["greet"].upstream_task_ids == {"one"}
    record, _, results = await run_once(make_settings(), pipeline, {"who": "Ada"})
    assert record.state is RunState.SUCCESS
    assert results["greet"] == "hello Ada x1"
    assert isinstance(pipeline.tasks["greet"].who, ParamRef)  # type: ignore[attr-defined]
