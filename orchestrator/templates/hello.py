"""hello: a first pipeline. Run it with `orchestrator run hello`.

A shell command, then two Python tasks: the value `compose` returns is passed to `report`,
and what `report` returns is printed at the end of the run. What a task prints goes to its
log: `orchestrator tasks logs RUN_ID report` shows it. Greet someone else with
`orchestrator run hello --conf '{"name": "Ada"}'`.
"""

from __future__ import annotations

from orchestrator import DAG, Shell, TaskContext, task


@task
def compose(context: TaskContext) -> str:
    """The greeting, for the name in the run's conf (or the DAG's default)."""
    name = context.conf.get("name", context.params["name"])
    return f"Hello, {name}!"


@task(retries=1)
def report(greeting: str) -> dict[str, object]:
    """Print the greeting into this task's log and return a small summary of it."""
    print(greeting)
    return {"greeting": greeting, "letters": sum(ch.isalpha() for ch in greeting)}


with DAG(
    "hello",
    description="Say hello from the shell and from Python",
    params={"name": "world"},
):
    where = Shell('echo "running on $(uname -n) as $ORCHESTRATOR_RUN_ID"', task_id="where")
    where >> report(compose())
