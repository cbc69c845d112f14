"""Building DAGs: blocks and factories, dependencies, checks, ordering, options and operators."""

from __future__ import annotations

import functools
import io
import json
import random
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.authoring.context import TaskContext
from orchestrator.authoring.dag import DAG, DagFactory, dag
from orchestrator.authoring.operators import BaseOperator, Shell
from orchestrator.authoring.references import Output, ParamRef, resolve_refs
from orchestrator.authoring.taskflow import FunctionTask, task
from orchestrator.authoring.tasks import Task, TaskOptions, chain
from orchestrator.authoring.trigger_rules import TriggerRule
from orchestrator.errors import (
    CycleError,
    DagError,
    DuplicateTaskError,
    TaskError,
    UnknownTaskError,
)

HERE = __file__


def _next_line() -> int:
    """The line after the caller's: where the statement that is about to fail starts."""
    return sys._getframe(1).f_lineno + 1


def _context(**fields: Any) -> TaskContext:
    return TaskContext(**{"dag_id": "d", "run_id": "r1", "task_id": "t", **fields})


def _noop(task_id: str, **options: Any) -> Shell:
    return Shell("true", task_id=task_id, **options)


def _edges(pipeline: DAG) -> set[tuple[str, str]]:
    return {
        (task_id, child)
        for task_id, node in pipeline.tasks.items()
        for child in node.downstream_task_ids
    }


# -- DAGs as blocks and factories ---------------------------------------------------------------


def test_a_with_block_collects_its_tasks() -> None:
    assert DAG.current() is None
    with DAG("etl", description="nightly", tags=["daily"]) as pipeline:
        assert DAG.current() is pipeline
        first = _noop("first")
        _noop("second")
    assert DAG.current() is None
    assert list(pipeline.tasks) == ["first", "second"]
    assert first.dag is pipeline
    assert (pipeline.description, pipeline.tags) == ("nightly", ("daily",))
    assert pipeline.site.file == HERE
    assert repr(pipeline) == "<DAG etl (2 tasks)>"
    assert repr(first) == "<Shell etl.first>"


def test_a_task_can_name_its_dag_outside_the_block() -> None:
    pipeline = DAG("explicit")
    made = _noop("a", dag=pipeline)
    assert pipeline.tasks == {"a": made}


def test_a_task_outside_a_dag_says_where() -> None:
    with pytest.raises(DagError, match="created outside a DAG") as caught:
        line = _next_line()
        Shell("true", task_id="lonely")
    assert (caught.value.file, caught.value.line) == (HERE, line)


@pytest.mark.parametrize("dag_id", ["", ".", "..", "has space", "a/b", "x" * 251, 42])
def test_a_bad_dag_id_is_refused_at_its_line(dag_id: Any) -> None:
    with pytest.raises(DagError, match="must be 1-250 letters, digits") as caught:
        line = _next_line()
        DAG(dag_id)
    assert (caught.value.file, caught.value.line) == (HERE, line)


@pytest.mark.parametrize("task_id", ["", ".", "..", "a/b", "a\\b", "nul\0", "x" * 251, 7])
def test_a_bad_task_id_is_refused_at_its_line(task_id: Any) -> None:
    with DAG("ids"), pytest.raises(DagError, match="task_id") as caught:
        line = _next_line()
        Shell("true", task_id=task_id)
    assert (caught.value.file, caught.value.line) == (HERE, line)


def test_a_plain_task_must_say_how_it_runs() -> None:
    with DAG("plain"):
        plain = Task(task_id="plain")
    assert plain.inputs == {}
    assert not plain.is_async
    assert not plain.is_mapped
    with pytest.raises(NotImplementedError, match="Task must implement run"):
        plain.run({}, _context())


def test_a_good_dag_id_may_use_dots_and_dashes() -> None:
    assert DAG("team.etl-v2_1").dag_id == "team.etl-v2_1"


@pytest.mark.parametrize("name", ["max_active_runs", "max_active_tasks"])
@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_run_limits_must_be_whole_numbers(name: str, value: Any) -> None:
    with pytest.raises(DagError, match=f"{name} must be a whole number of 1 or more"):
        DAG("limits", **{name: value})


def test_dag_decorator_makes_params_from_the_signature() -> None:
    @task
    def train(epochs: int, rate: float) -> str:
        return f"{epochs}@{rate}"

    @dag(max_active_runs=1, params={"rate": 0.1})
    def retrain(epochs: int = 10, rate: float = 0.5, *extra: Any, **more: Any) -> None:
        train(epochs, rate)

    assert isinstance(retrain, DagFactory)
    assert retrain.__name__ == "retrain"
    pipeline = retrain()
    assert retrain.built is pipeline
    assert pipeline.dag_id == "retrain"
    assert pipeline.max_active_runs == 1
    assert pipeline.params == {"epochs": 10, "rate": 0.1}  # options' params beat defaults
    made = pipeline.tasks["train"]
    assert made.inputs["args"][0].name == "epochs"
    resolved = resolve_refs(made.inputs, {}, _context(params={"epochs": 3, "rate": 0.2}))
    assert resolved == {"args": [3, 0.2], "kwargs": {}}
    assert made.run(resolved, _context()) == "3@0.2"


def test_dag_decorator_call_params_and_dag_id() -> None:
    @dag(dag_id="custom")
    def factory(day: str = "monday", required: Any = None) -> None:
        assert isinstance(day, ParamRef)

    line = _next_line()
    pipeline = factory(day="friday", extra=1)
    assert pipeline.dag_id == "custom"
    assert pipeline.params == {"day": "friday", "required": None, "extra": 1}
    assert (pipeline.site.file, pipeline.site.line) == (HERE, line)  # the call's line


def test_dag_decorator_without_parentheses() -> None:
    @dag
    def plain() -> None:
        _noop("only")

    assert list(plain().tasks) == ["only"]


# -- dependencies -------------------------------------------------------------------------------


def test_shift_operators_link_tasks_outputs_and_lists() -> None:
    @task
    def produce() -> int:
        return 1

    with DAG("shifts") as pipeline:
        a, b, c, d, e = (_noop(name) for name in "abcde")
        out = produce()
        assert (a >> b) is b
        assert (c << b) is b
        assert (a >> [c, d]) == [c, d]
        assert ([a, b] >> e) is e
        assert (out >> e) is e
        assert (e << out) is out
        assert ([out] >> d) is d
        assert (d << [out]) == [out]
    assert _edges(pipeline) == {
        ("a", "b"),
        ("b", "c"),
        ("a", "c"),
        ("a", "d"),
        ("a", "e"),
        ("b", "e"),
        ("produce", "e"),
        ("produce", "d"),
    }
    assert pipeline.tasks["e"].upstream_task_ids == {"a", "b", "produce"}


def test_outputs_work_on_either_side_of_a_shift() -> None:
    @task
    def produce() -> int:
        return 1

    with DAG("reflected") as pipeline:
        a, b, c, d = (_noop(name) for name in "abcd")
        out = produce()
        assert (out << a) is a
        assert ([b] >> out) is out  # a list has no >>: Output.__rrshift__
        assert ([c] << out) is out  # Output.__rlshift__
        assert ([d] << a) is a  # Task.__rlshift__
    assert _edges(pipeline) == {("a", "produce"), ("b", "produce"), ("produce", "c"), ("a", "d")}


def test_a_chain_of_shifts_reads_left_to_right() -> None:
    with DAG("line") as pipeline:
        a, b, c, d = (_noop(name) for name in "abcd")
        a >> [b, c] >> d
    assert _edges(pipeline) == {("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")}


@pytest.mark.parametrize("other", ["b", 3, None])
def test_depending_on_something_that_is_not_a_task(other: Any) -> None:
    with DAG("bad_edge"):
        a = _noop("a")
        with pytest.raises(TypeError, match=r"cannot make a dependency on .* expected a task"):
            a >> other


def test_chain_pairs_adjacent_lists() -> None:
    with DAG("chained") as pipeline:
        a, b, c, d, e, f = (_noop(name) for name in "abcdef")
        chain(a, [b, c], [d, e], f)
    assert _edges(pipeline) == {
        ("a", "b"),
        ("a", "c"),
        ("b", "d"),  # paired, not crossed
        ("c", "e"),
        ("d", "f"),
        ("e", "f"),
    }


def test_chain_refuses_lists_of_different_lengths() -> None:
    with DAG("uneven"):
        a, b, c = (_noop(name) for name in "abc")
        with pytest.raises(ValueError, match=r"pairs two adjacent lists .* 2 and 1 tasks"):
            chain([a, b], [c])


def test_chain_of_one_item_adds_nothing() -> None:
    with DAG("single") as pipeline:
        chain(_noop("a"))
    assert _edges(pipeline) == set()


def test_depends_on_ids_become_edges_when_validated() -> None:
    with DAG("by_id") as pipeline:
        _noop("b", depends_on=["a"])  # may name a task defined later
        _noop("a")
    assert _edges(pipeline) == set()
    pipeline.validate()
    assert _edges(pipeline) == {("a", "b")}


def test_an_unknown_depends_on_id_is_an_error_at_the_task() -> None:
    with DAG("by_id") as pipeline:
        _noop("a")
        line = _next_line()
        Shell("true", task_id="b", depends_on=["c"])
    with pytest.raises(UnknownTaskError) as caught:
        pipeline.validate()
    error = caught.value
    assert (error.file, error.line) == (HERE, line)
    assert error.message == (
        "task 'b' depends on 'c', which is not a task of DAG 'by_id' (its tasks: a, b)"
    )


def test_a_duplicate_task_id_names_both_lines() -> None:
    with DAG("dupes"):
        first_line = _next_line()
        Shell("true", task_id="same")
        with pytest.raises(DuplicateTaskError) as caught:
            line = _next_line()
            Shell("true", task_id="same")
    error = caught.value
    assert (error.file, error.line) == (HERE, line)
    assert f"(defined at {HERE}:{first_line})" in error.message


def test_a_cycle_is_reported_as_a_path() -> None:
    with DAG("loop") as pipeline:
        a, b, c = (_noop(name) for name in "abc")
        _noop("outside") >> a
        a >> b >> c >> a
    with pytest.raises(CycleError) as caught:
        pipeline.validate()
    assert caught.value.path == ["a", "b", "c", "a"]
    assert caught.value.message == "DAG 'loop' has a cycle: a -> b -> c -> a"
    assert (caught.value.file, caught.value.line) == (HERE, pipeline.site.line)


def test_a_task_cannot_depend_on_itself() -> None:
    with DAG("self"):
        a = _noop("a")
        with pytest.raises(CycleError, match="task 'a' cannot depend on itself") as caught:
            a >> a
    assert caught.value.path == ["a", "a"]


def test_an_acyclic_dag_validates() -> None:
    with DAG("fine") as pipeline:
        a, b, c = (_noop(name) for name in "abc")
        a >> [b, c]
        b >> c
    pipeline.validate()


def test_a_dependency_across_dags_is_refused() -> None:
    with DAG("one"):
        a = _noop("a")
    with DAG("two"):
        _noop("a")
        b = _noop("b")
        with pytest.raises(DagError, match=r"of DAG 'two' cannot depend on .* of DAG 'one'") as e:
            line = _next_line()
            b << a
        assert (e.value.file, e.value.line) == (HERE, line)
        with pytest.raises(DagError, match="use a sensor"):
            chain(b, a)


# -- order and priorities -----------------------------------------------------------------------


def test_topological_order_breaks_ties_by_definition_order() -> None:
    names = ["t9", "t1", "t5", "t3", "t7", "t2", "t8", "t4", "t6"]
    with DAG("fan") as pipeline:
        root = _noop("root")
        children = [_noop(name) for name in names]
        root >> children
        _noop("alone")
    # "alone" is ready first but defined last: among ready tasks, definition order decides.
    assert pipeline.topological_order() == ["root", *names, "alone"]


def test_topological_order_puts_each_task_after_its_upstreams() -> None:
    with DAG("diamond") as pipeline:
        d = _noop("d")
        c = _noop("c")
        b = _noop("b")
        a = _noop("a")
        a >> [b, c] >> d
    order = pipeline.topological_order()
    assert order == ["a", "c", "b", "d"]
    for upstream, downstream in _edges(pipeline):
        assert order.index(upstream) < order.index(downstream)


def test_priorities_add_every_downstream_weight() -> None:
    with DAG("weights") as pipeline:
        a = _noop("a")
        b = _noop("b", priority_weight=10)
        c = _noop("c")
        d = _noop("d")
        lone = _noop("lone", priority_weight=3)
        a >> [b, c] >> d
    # d is below a twice (via b and via c) but counts once.
    assert pipeline.priorities() == {"a": 13, "b": 11, "c": 2, "d": 1, "lone": 3}
    assert lone.options.priority_weight == 3


def test_priorities_match_a_walk_of_every_descendant() -> None:
    rng = random.Random(20240501)
    with DAG("random") as pipeline:
        made = [_noop(f"t{i}", priority_weight=rng.choice([1, 1, 2, 5, -1])) for i in range(60)]
        for index, upstream in enumerate(made):
            for downstream in rng.sample(made[index + 1 :], k=min(3, len(made) - index - 1)):
                upstream >> downstream
    pipeline.validate()

    @functools.cache
    def descendants(task_id: str) -> frozenset[str]:
        children = pipeline.tasks[task_id].downstream_task_ids
        return frozenset(children).union(*(descendants(child) for child in children))

    expected = {
        task_id: node.options.priority_weight
        + sum(pipeline.tasks[other].options.priority_weight for other in descendants(task_id))
        for task_id, node in pipeline.tasks.items()
    }
    assert pipeline.priorities() == expected


def test_topological_order_takes_the_first_defined_ready_task_each_time() -> None:
    """The heap of positions gives what a plain scan of every ready task gives (a random DAG,
    tasks defined in a shuffled order, so that definition order and edges disagree)."""
    rng = random.Random(20261205)
    names = [f"t{i}" for i in range(80)]
    rng.shuffle(names)
    with DAG("random_order") as pipeline:
        made = {name: _noop(name) for name in names}
        ranked = sorted(made)  # edges go from lower to higher name: no cycle
        for index, upstream in enumerate(ranked):
            for downstream in rng.sample(ranked[index + 1 :], k=min(2, len(ranked) - index - 1)):
                made[upstream] >> made[downstream]
    pipeline.validate()
    expected: list[str] = []
    while len(expected) < len(names):
        expected.append(
            next(
                name
                for name in names
                if name not in expected and pipeline.tasks[name].upstream_task_ids <= set(expected)
            )
        )
    assert pipeline.topological_order() == expected
    assert pipeline.order_and_priorities() == (expected, pipeline.priorities())


def test_priorities_of_tasks_with_nothing_downstream_are_their_weights() -> None:
    with DAG("flat") as pipeline:
        for i in range(5):
            _noop(f"t{i}", priority_weight=i - 2)
    assert pipeline.order_and_priorities() == (
        [f"t{i}" for i in range(5)],
        {f"t{i}": i - 2 for i in range(5)},
    )


def test_roots_and_leaves() -> None:
    with DAG("shape") as pipeline:
        a, b, c = (_noop(name) for name in "abc")
        alone = _noop("alone")
        a >> b >> c
    assert pipeline.roots == ["a", "alone"]
    assert pipeline.leaves == ["c", "alone"]
    assert alone.upstream_task_ids == alone.downstream_task_ids == set()


# -- options ------------------------------------------------------------------------------------


def test_default_args_fill_in_what_a_task_leaves_out() -> None:
    with DAG("defaults", default_args={"retries": 2, "pool": "io", "retry_delay": 1}):
        inherits = _noop("inherits")
        overrides = _noop("overrides", retries=0, trigger_rule="all_done")
    assert (inherits.options.retries, inherits.options.pool) == (2, "io")
    assert (overrides.options.retries, overrides.options.pool) == (0, "io")
    assert overrides.options.trigger_rule is TriggerRule.ALL_DONE
    assert inherits.options.retry_policy.retries == 2
    assert inherits.options.retry_policy.delay == 1.0


def test_an_unknown_default_arg_is_refused_by_the_dag() -> None:
    known = "known: depends_on_past, execution_timeout"
    with pytest.raises(TypeError, match=f"unknown task option 'retires'; {known}"):
        DAG("typo", default_args={"retires": 2})


def test_an_unknown_dag_keyword_is_named_at_its_line_with_the_one_meant() -> None:
    line = _next_line()
    with pytest.raises(DagError, match="unknown keyword 'schedule_interval'") as caught:
        DAG("typo", schedule_interval="@daily")  # type: ignore[call-arg]
    assert "did you mean 'schedule'?" in str(caught.value)
    assert (caught.value.file, caught.value.line) == (HERE, line + 1)
    with pytest.raises(DagError, match="unknown keyword 'colour'; known: batch_window, catchup"):
        DAG("typo", colour="red")  # type: ignore[call-arg]


def test_an_unknown_task_option_lists_the_known_ones() -> None:
    with DAG("typo"), pytest.raises(TypeError, match="unknown task option 'pol'") as caught:
        _noop("a", pol="gpu")
    assert "pool, pool_slots, priority_weight" in str(caught.value)


def test_task_options_defaults() -> None:
    options = TaskOptions()
    assert options.trigger_rule is TriggerRule.ALL_SUCCESS
    assert (options.retries, options.pool, options.pool_slots) == (0, "default", 1)
    assert options.timeout_seconds is None
    assert options.in_process is None


def test_task_options_convert_durations_and_rules() -> None:
    options = TaskOptions(
        trigger_rule="one_failed",
        execution_timeout=timedelta(minutes=1),
        retry_delay=timedelta(seconds=3),
        retries=4,
        retry_exponential_backoff=True,
        max_retry_delay=10,
        retry_jitter=True,
    )
    assert options.trigger_rule is TriggerRule.ONE_FAILED
    assert options.timeout_seconds == 60.0
    policy = options.retry_policy
    assert (policy.retries, policy.delay, policy.exponential) == (4, 3.0, True)
    assert (policy.max_delay, policy.jitter) == (10.0, True)


def test_a_bad_trigger_rule_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown trigger_rule 'sometimes'; choose one of: ") as e:
        TaskOptions(trigger_rule="sometimes")
    assert all(rule.value in str(e.value) for rule in TriggerRule)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"retries": -1}, ValueError, "retries must be 0 or more, got -1"),
        ({"retries": "3"}, TypeError, "retries must be a whole number, got '3'"),
        ({"retries": True}, TypeError, "retries must be a whole number"),
        ({"pool_slots": 0}, ValueError, "pool_slots must be 1 or more, got 0"),
        ({"priority_weight": 1.5}, TypeError, "priority_weight must be a whole number"),
        ({"pool": ""}, ValueError, "pool must be a pool's name"),
        ({"execution_timeout": 0}, ValueError, "execution_timeout must be positive"),
        ({"execution_timeout": timedelta(0)}, ValueError, "execution_timeout must be positive"),
        ({"execution_timeout": -5}, ValueError, "a duration cannot be negative"),
        ({"retry_delay": -1}, ValueError, "a duration cannot be negative"),
        ({"retry_delay": "5s"}, TypeError, "a number of seconds or a timedelta"),
    ],
)
def test_bad_task_options_are_refused(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        TaskOptions(**options)


# -- operators ----------------------------------------------------------------------------------


class Greet(BaseOperator):
    def __init__(self, *, name: str, **options: Any) -> None:
        super().__init__(**options)
        self.name = name

    def execute(self, context: TaskContext) -> str:
        return f"hello {self.name} from {context.task_id}"


class AsyncGreet(BaseOperator):
    async def execute(self, context: TaskContext) -> str:
        return "hi"


class Unfinished(BaseOperator):
    pass


async def test_operators_run_their_execute_method() -> None:
    with DAG("ops"):
        line = _next_line()
        greet = Greet(name="ada", task_id="greet")
        async_greet = AsyncGreet(task_id="async_greet")
        unfinished = Unfinished(task_id="unfinished")
    assert greet.site == type(greet.site)(HERE, line)  # the creating line, not Greet.__init__
    assert not greet.is_async
    assert greet.run({}, _context(task_id="greet")) == "hello ada from greet"
    assert async_greet.is_async
    assert await async_greet.run({}, _context()) == "hi"
    with pytest.raises(NotImplementedError, match="Unfinished must implement execute"):
        unfinished.run({}, _context())


def test_shell_returns_the_last_non_blank_line() -> None:
    with DAG("shell"):
        shell = Shell("echo first; echo; echo last; echo", task_id="s")
    assert not shell.is_async
    assert shell.run({}, _context()) == "last"


def test_shell_sees_the_run_in_its_environment(tmp_path: Path) -> None:
    variables = ["DAG_ID", "RUN_ID", "TASK_ID", "TRY_NUMBER", "CONF", "PARAMS"]
    line = "|".join(f"${{ORCHESTRATOR_{name}}}" for name in variables)
    with DAG("shell"):
        shell = Shell(
            f'echo "{line}|$EXTRA|$(pwd)"', task_id="s", env={"EXTRA": "given"}, cwd=str(tmp_path)
        )
    context = _context(
        dag_id="shell", run_id="r7", task_id="s", try_number=2, conf={"day": 1}, params={"p": [1]}
    )
    dag_id, run_id, task_id, try_number, conf, params, extra, cwd = shell.run({}, context).split(
        "|"
    )
    assert (dag_id, run_id, task_id, try_number) == ("shell", "r7", "s", "2")
    assert (json.loads(conf), json.loads(params)) == ({"day": 1}, {"p": [1]})
    assert (extra, cwd) == ("given", str(tmp_path))


def test_shell_fails_on_a_non_zero_exit() -> None:
    with DAG("shell"):
        shell = Shell("echo partial; exit 3", task_id="s")
    with pytest.raises(TaskError, match="command exited with code 3: echo partial; exit 3"):
        shell.run({}, _context())


def test_shell_survives_output_that_is_not_utf8() -> None:
    with DAG("shell"):
        shell = Shell("printf 'caf\\377\\n'; echo done", task_id="s")
    assert shell.run({}, _context()) == "done"


async def test_shell_kills_the_command_when_its_output_cannot_be_logged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failed try must not leave its command running (here it would run for ten minutes)."""
    with DAG("shell"):
        shell = Shell("echo first; exec sleep 600", task_id="s")
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stdout", closed)  # echoing the first line into the log fails
    with anyio.fail_after(30), pytest.raises(ValueError, match="closed file"):
        await anyio.to_thread.run_sync(shell.run, {}, _context(), abandon_on_cancel=True)


@pytest.mark.parametrize("command", ["", "   ", None])
def test_shell_needs_a_command(command: Any) -> None:
    with DAG("shell"), pytest.raises(ValueError, match="Shell task 's' needs a non-empty command"):
        Shell(command, task_id="s")


def test_a_task_function_and_an_operator_mix_in_one_dag() -> None:
    @task
    def make() -> int:
        return 1

    with DAG("mixed") as pipeline:
        made = make()
        shell = Shell("true", task_id="after")
        made >> shell
    assert isinstance(made, Output)
    assert isinstance(pipeline.tasks["make"], FunctionTask)
    assert pipeline.topological_order() == ["make", "after"]
