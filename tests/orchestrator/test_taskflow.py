"""`@task` functions: calls that make tasks, outputs that make edges, mapping and branching."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from orchestrator.authoring.context import TaskContext
from orchestrator.authoring.dag import DAG, dag
from orchestrator.authoring.operators import Shell
from orchestrator.authoring.references import Output, ParamRef, iter_refs, resolve_refs
from orchestrator.authoring.taskflow import FunctionTask, TaskFunction, task
from orchestrator.authoring.tasks import map_combinations
from orchestrator.authoring.trigger_rules import TriggerRule
from orchestrator.errors import DagError, DuplicateTaskError

HERE = __file__


def _next_line() -> int:
    """The line after the caller's: where the statement that is about to fail starts."""
    return sys._getframe(1).f_lineno + 1


def _context(**fields: Any) -> TaskContext:
    return TaskContext(**{"dag_id": "d", "run_id": "r1", "task_id": "t", **fields})


def _function_task(output: Output) -> FunctionTask:
    assert isinstance(output.task, FunctionTask)
    return output.task


@task
def extract() -> dict[str, Any]:
    """Fetch some rows."""
    return {"rows": [10, 20, 30], "source": "db"}


@task(retries=2, pool="io")
def total(values: list[int], offset: int = 0) -> int:
    return sum(values) + offset


@task
async def fetch(url: str) -> str:
    return f"fetched {url}"


@task
def describe(name: str, context: TaskContext) -> str:
    return f"{name} in {context.run_id} try {context.try_number}"


# -- the decorator ------------------------------------------------------------------------------


def test_the_decorator_keeps_the_function_usable() -> None:
    assert isinstance(extract, TaskFunction)
    assert extract.__name__ == "extract"
    assert extract.__doc__ == "Fetch some rows."
    assert total.function([1, 2], offset=3) == 6  # the plain function, no DAG needed
    assert total.options == {"retries": 2, "pool": "io"}


def test_calling_a_task_function_adds_a_task_and_returns_its_output() -> None:
    with DAG("flow") as pipeline:
        rows = extract()
        result = total(rows["rows"], offset=5)
    assert isinstance(result, Output)
    made = _function_task(result)
    assert list(pipeline.tasks) == ["extract", "total"]
    assert made.upstream_task_ids == {"extract"}
    assert (made.options.retries, made.options.pool) == (2, "io")
    [argument] = made.inputs["args"]
    assert (argument.task, argument.path) == (rows.task, ("rows",))
    assert made.inputs["kwargs"] == {"offset": 5}
    assert made.site.file == HERE
    assert repr(result) == "Output('total')"
    assert repr(rows["rows"][0]) == "Output('extract')['rows'][0]"


def test_outputs_resolve_to_results_and_items_inside_them() -> None:
    with DAG("flow"):
        rows = extract()
        result = total(rows["rows"], offset=rows["rows"][0])
    made = _function_task(result)
    results = {"extract": {"rows": [1, 2, 3], "source": "db"}}
    resolved = resolve_refs(made.inputs, results, _context())
    assert resolved == {"args": [[1, 2, 3]], "kwargs": {"offset": 1}}
    assert made.run(resolved, _context()) == 7


def test_outputs_nested_in_lists_and_dicts_make_edges() -> None:
    @task
    def combine(parts: list[Any], named: dict[str, Any], pair: tuple[Any, Any]) -> None:
        pass

    with DAG("nested") as pipeline:
        a, b, c = extract(), extract(), extract()
        combined = combine([a, 1], named={"x": {"y": b}}, pair=(c, 2))
    made = _function_task(combined)
    assert made.upstream_task_ids == {"extract", "extract__1", "extract__2"}
    assert [ref.upstream_task_ids() for ref in made.input_refs()] == [
        {"extract"},
        {"extract__1"},
        {"extract__2"},
    ]
    results = {"extract": "A", "extract__1": "B", "extract__2": "C"}
    resolved = resolve_refs(made.inputs, results, _context())
    assert resolved["kwargs"]["pair"] == ("C", 2)  # a tuple stays a tuple
    assert resolved["kwargs"]["named"] == {"x": {"y": "B"}}
    assert pipeline.tasks["combine"].upstream_task_ids == made.upstream_task_ids
    assert resolved["args"] == [["A", 1]]


def test_resolved_inputs_are_copies_a_try_may_change() -> None:
    @task
    def change(rows: list[Any], pair: tuple[Any, ...], plain: list[int]) -> None:
        pass

    with DAG("copies"):
        changed = change([[1], 2], ((3,), [4]), plain=[5, 6])
    made = _function_task(changed)
    resolved = resolve_refs(made.inputs, {}, _context())
    assert resolved == {"args": [[[1], 2], ((3,), [4])], "kwargs": {"plain": [5, 6]}}
    resolved["args"][0][0].append("x")
    resolved["args"][1][1].append("y")
    resolved["kwargs"]["plain"].append(7)
    assert made.inputs == {"args": [[[1], 2], ((3,), [4])], "kwargs": {"plain": [5, 6]}}
    assert type(resolved["args"][1]) is tuple


def test_iter_refs_ignores_plain_values() -> None:
    assert list(iter_refs({"a": [1, "two", (3.0, None)]})) == []
    param = ParamRef("day")
    assert list(iter_refs([{"k": param}])) == [param]


def test_repeated_calls_get_numbered_ids() -> None:
    with DAG("repeat") as pipeline:
        extract.override(task_id="extract__1")()  # an explicit id that looks like a number
        ids = [_function_task(extract()).task_id for _ in range(3)]
    assert ids == ["extract", "extract__2", "extract__3"]
    assert list(pipeline.tasks) == ["extract__1", "extract", "extract__2", "extract__3"]


def test_an_explicit_id_used_twice_is_a_duplicate() -> None:
    fixed = task(task_id="fixed")(extract.function)
    with DAG("dupes"):
        fixed()
        with pytest.raises(DuplicateTaskError, match="already has a task 'fixed'") as caught:
            line = _next_line()
            fixed()
    assert (caught.value.file, caught.value.line) == (HERE, line)


def test_override_changes_options_for_one_use() -> None:
    special = total.override(task_id="grand_total", retries=0, trigger_rule="all_done")
    with DAG("override") as pipeline:
        total([1])
        special([2])
    assert special.options == {"retries": 0, "pool": "io", "trigger_rule": "all_done"}
    assert total.options == {"retries": 2, "pool": "io"}  # the original is untouched
    made = pipeline.tasks["grand_total"]
    assert (made.options.retries, made.options.pool) == (0, "io")
    assert made.options.trigger_rule is TriggerRule.ALL_DONE


def test_an_unknown_option_is_refused_at_the_decorators_line() -> None:
    with pytest.raises(DagError, match="unknown task option 'retires'; known: ") as caught:
        line = _next_line()
        task(retires=3)(extract.function)
    assert (caught.value.file, caught.value.line) == (HERE, line)


def test_multiple_outputs_is_refused_at_the_decorator_saying_what_to_do_instead() -> None:
    with pytest.raises(DagError, match=r'return a dict and pass `out\["key"\]`') as caught:
        line = _next_line()

        @task(multiple_outputs=True)
        def pair() -> dict[str, int]:
            return {"a": 1}

    assert (caught.value.file, caught.value.line) == (HERE, line + 1)  # the decorator


def _helper(value: int) -> int:
    return value


def test_a_function_passed_as_an_argument_is_refused_at_the_calls_line() -> None:
    with DAG("functions"), pytest.raises(DagError, match=r"is a function \(_helper\)") as caught:
        line = _next_line()
        total(_helper)
    assert (caught.value.file, caught.value.line) == (HERE, line)
    assert "argument 1 of task 'total'" in caught.value.message


def test_an_object_deep_in_an_argument_is_refused_too_but_outputs_pass() -> None:
    with DAG("objects"):
        total({"rows": [1, extract()]})  # an output inside plain data is fine
        with pytest.raises(DagError, match="is a set object, which is not a JSON value"):
            total(values={"rows": [{1, 2}]})


def test_a_call_outside_a_dag_says_where_and_how_to_call_the_function() -> None:
    with pytest.raises(DagError, match=r"use `extract.function\(...\)`") as caught:
        line = _next_line()
        extract()
    assert (caught.value.file, caught.value.line) == (HERE, line)


def test_an_output_from_another_dag_is_refused() -> None:
    with DAG("first"):
        rows = extract()
    with DAG("second"), pytest.raises(DagError, match=r"cannot depend on .* of DAG 'first'"):
        total(rows)


# -- running ------------------------------------------------------------------------------------


def test_a_sync_task_runs_its_function() -> None:
    with DAG("run"):
        made = _function_task(total([1, 2], offset=1))
    assert not made.is_async
    assert made.run({"args": [[5, 5]], "kwargs": {"offset": 1}}, _context()) == 11


async def test_an_async_task_runs_in_the_loop() -> None:
    with DAG("run"):
        made = _function_task(fetch("http://example.test"))
    assert made.is_async
    assert await made.run({"args": ["http://a.test"], "kwargs": {}}, _context()) == (
        "fetched http://a.test"
    )


def test_a_context_parameter_receives_the_run_context() -> None:
    with DAG("ctx"):
        made = _function_task(describe("job"))
    context = _context(run_id="r9", try_number=2)
    assert made.run({"args": ["job"], "kwargs": {}}, context) == "job in r9 try 2"
    other = _context(run_id="given")
    given = made.run({"args": ["job"], "kwargs": {"context": other}}, context)
    assert given == "job in given try 1"  # a context passed explicitly is kept


def test_dag_params_reach_task_arguments() -> None:
    @dag
    def reporting(day: str = "monday") -> None:
        describe(day)

    pipeline = reporting()
    made = pipeline.tasks["describe"]
    [ref] = list(made.input_refs())
    assert isinstance(ref, ParamRef)
    assert ref.upstream_task_ids() == set()
    assert repr(ref) == "ParamRef('day')"
    resolved = resolve_refs(made.inputs, {}, _context(params={"day": "friday"}))
    assert made.run(resolved, _context(run_id="r2")) == "friday in r2 try 1"


# -- mapping ------------------------------------------------------------------------------------


def test_expand_over_a_literal_list() -> None:
    with DAG("mapped") as pipeline:
        mapped = total.expand(values=[[1], [2, 3]])
    made = _function_task(mapped)
    assert made.is_mapped
    assert made.expand_inputs == {"values": [[1], [2, 3]]}
    assert made.upstream_task_ids == set()
    assert not pipeline.tasks["total"].inputs["args"]


def test_expand_over_an_output_depends_on_it() -> None:
    with DAG("mapped"):
        rows = extract()
        mapped = total.partial(offset=100).expand(values=rows["rows"])
    made = _function_task(mapped)
    assert made.upstream_task_ids == {"extract"}
    assert made.inputs == {"args": [], "kwargs": {"offset": 100}}
    resolved_lists = resolve_refs(made.expand_inputs, {"extract": {"rows": [[1], [2]]}}, _context())
    assert resolved_lists == {"values": [[1], [2]]}
    instance = map_combinations(made.task_id, resolved_lists)[1]
    assert made.run({**made.inputs, "mapped": instance}, _context(map_index=1)) == 102


def test_partial_arguments_add_up_and_do_not_leak() -> None:
    base = total.partial(offset=1)
    assert base.partial(values=[1]).partial_kwargs == {"offset": 1, "values": [1]}
    assert base.partial_kwargs == {"offset": 1}
    assert total.partial_kwargs == {}


def test_a_plain_call_of_a_partial_uses_its_arguments() -> None:
    with DAG("partial"):
        made = _function_task(total.partial(offset=4)([1]))
    assert made.inputs == {"args": [[1]], "kwargs": {"offset": 4}}
    assert not made.is_mapped


@pytest.mark.parametrize(("value", "kind"), [(5, "int"), ("abc", "str"), ({"a": 1}, "dict")])
def test_expand_needs_a_list_or_an_output(value: Any, kind: str) -> None:
    with DAG("bad"), pytest.raises(TypeError, match=rf"total.expand\(values=...\) .* got {kind}"):
        total.expand(values=value)


def test_expand_needs_an_argument() -> None:
    with DAG("bad"), pytest.raises(TypeError, match="needs at least one keyword argument"):
        total.expand()


def test_map_combinations_is_the_product_in_order() -> None:
    combos = map_combinations("t", {"a": [1, 2], "b": ("x", "y", "z")})
    assert combos == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 1, "b": "z"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
        {"a": 2, "b": "z"},
    ]
    assert map_combinations("t", {"a": [7]}) == [{"a": 7}]
    assert map_combinations("t", {"a": [1, 2], "b": []}) == []  # nothing to run


def test_map_combinations_refuses_what_is_not_a_list_at_run_time() -> None:
    with pytest.raises(TypeError, match=r"task 'train' is expanded over 'rates', .* got dict"):
        map_combinations("train", {"epochs": [1], "rates": {"a": 1}})


# -- branching ----------------------------------------------------------------------------------


def test_branch_tasks_are_marked() -> None:
    @task.branch
    def choose() -> str:
        return "left"

    @task.branch(task_id="pick", retries=1)
    def choose_with_options() -> list[str]:
        return ["left", "right"]

    with DAG("branches") as pipeline:
        chosen = choose()
        picked = choose_with_options()
        plain = extract()
        renamed = choose.override(task_id="again")()
        chosen >> [plain]
    assert _function_task(chosen).is_branch
    assert _function_task(picked).task_id == "pick"
    assert _function_task(picked).is_branch
    assert _function_task(picked).options.retries == 1
    assert _function_task(renamed).is_branch  # override keeps it a branch
    assert not _function_task(plain).is_branch
    assert pipeline.tasks["extract"].upstream_task_ids == {"choose"}
    assert _function_task(chosen).run({}, _context()) == "left"


def test_an_option_set_after_creation_takes_effect_and_is_checked() -> None:
    with DAG("late") as pipeline:
        made = total([1])
        made.trigger_rule = "all_done"  # type: ignore[misc]
        shell = Shell(task_id="shell", command="true")
        shell.retries = 3
    assert pipeline.tasks["total"].options.trigger_rule is TriggerRule.ALL_DONE
    assert pipeline.tasks["shell"].options.retries == 3
    assert shell.retries == 3
    with pytest.raises(ValueError, match="unknown trigger_rule 'sometimes'"):
        shell.trigger_rule = "sometimes"
    with pytest.raises(AttributeError, match="only task options"):
        made.retires = 2  # type: ignore[attr-defined]


def test_context_fields_reach_parameters_named_after_them() -> None:
    @task
    def report(
        value: int,
        params: dict[str, Any],
        run_id: str | None = None,
        logical_date: float | None = None,
        try_number: int = 7,
    ) -> list[Any]:
        return [value, params, run_id, logical_date, try_number]

    with DAG("named", params={"size": 2}):
        made = _function_task(report(1))
        given = _function_task(report(2, {"given": True}, run_id="mine"))
    context = _context(params={"size": 2}, logical_date=60.0, try_number=2)
    # a real default (try_number=7) is the function's own: only None or none is filled in
    assert made.run(made.inputs, context) == [1, {"size": 2}, "r1", 60.0, 7]
    assert given.run(given.inputs, context) == [2, {"given": True}, "mine", 60.0, 7]
