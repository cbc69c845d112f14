"""The `orchestrator` command end to end: a real subprocess in a project written by the test."""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from clikit import command, environment
from clikit import run_cli as orchestrator

PIPELINES = """
import anyio

from orchestrator.authoring.context import TaskContext
from orchestrator.authoring.dag import DAG
from orchestrator.authoring.taskflow import task


@task
def extract() -> list[int]:
    print("extracting three rows")
    return [1, 2, 3]


@task
def summarise(values: list[int], context: TaskContext) -> dict[str, object]:
    return {"model_path": "/tmp/model.bin", "accuracy": 0.97, "rows": len(values), **context.conf}


@task(retries=1, retry_delay=0)
def flaky(context: TaskContext) -> None:
    print(f"attempt {context.try_number}")
    raise RuntimeError("always broken")


@task
async def hang() -> None:
    await anyio.Event().wait()


with DAG("good", description="Extract, then summarise"):
    summarise(extract())

with DAG("bad"):
    flaky()

with DAG("hang"):
    hang()
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "pipelines.py").write_text(PIPELINES)
    (tmp_path / "orchestrator.toml").write_text("slots = 2\n")
    return tmp_path


async def run_ids(project: Path) -> list[str]:
    return [run["run_id"] for run in (await orchestrator(project, "runs", "list", "--json")).json()]


# -- run ----------------------------------------------------------------------------------------


async def test_run_prints_progress_lines_then_the_summary(project: Path) -> None:
    done = await orchestrator(project, "run", "good", "--in-process")
    assert done.code == 0, done.stderr
    (run_id,) = await run_ids(project)
    lines = done.stdout.splitlines()
    assert lines[0] == f"Run {run_id} of good (2 tasks)"
    assert any(line.endswith("extract          success  (try 1)") for line in lines)
    assert f"Run {run_id} of good: success in " in done.stdout
    assert f"Logs: {project}/.orchestrator/logs/good/{run_id}" in lines
    assert lines[-5:] == [
        "Results:",
        "  summarise:",
        "    model_path: /tmp/model.bin",
        "    accuracy: 0.97",
        "    rows: 3",
    ]
    assert "\x1b[" not in done.stdout  # not a terminal: no colours, no live widget


async def test_run_passes_conf_to_the_tasks(project: Path) -> None:
    done = await orchestrator(project, "run", "good", "--in-process", "--conf", '{"day": "mon"}')
    assert done.code == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "    day: mon"


async def test_a_failed_run_exits_1_and_shows_the_error_and_log(project: Path) -> None:
    done = await orchestrator(project, "run", "bad", "--in-process")
    assert done.code == 1
    assert "Failed tasks:" in done.stdout
    assert "  flaky (try 2/2): RuntimeError: always broken" in done.stdout
    log_line = next(line for line in done.stdout.splitlines() if line.startswith("    log: "))
    log = Path(log_line.removeprefix("    log: "))
    assert log.name == "flaky.try-2.log" and "attempt 2" in log.read_text()


async def test_an_unknown_dag_is_a_usage_error_with_suggestions(project: Path) -> None:
    done = await orchestrator(project, "run", "god")
    assert done.code == 2
    assert done.stderr.startswith("error: no DAG with id 'god'")
    assert "did you mean 'good'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (project / ".orchestrator").exists()


async def test_broken_files_are_warnings_that_do_not_stop_the_run(project: Path) -> None:
    (project / "dags" / "broken.py").write_text("import nonexistent_module\n")
    done = await orchestrator(project, "run", "good", "--in-process")
    assert done.code == 0, done.stderr
    assert (
        "warning: dags/broken.py:1: ModuleNotFoundError: No module named 'nonexistent_module'"
        in done.stderr
    )


async def test_ctrl_c_cancels_the_run_and_exits_130(project: Path) -> None:
    with anyio.fail_after(60):
        async with await anyio.open_process(
            command("run", "hang", "--in-process"), cwd=project, env=environment()
        ) as process:
            assert process.stdout is not None
            lines = BufferedByteReceiveStream(process.stdout)
            line = b""
            while not (b"hang " in line and b"running" in line):  # the task, not the run
                line = await lines.receive_until(b"\n", 65536)
            process.send_signal(signal.SIGINT)
            rest = b""
            async for chunk in lines:
                rest += chunk
            code = await process.wait()
    assert code == 130
    output = rest.decode()
    assert "Cancelling the run" in output
    assert " of hang: cancelled in " in output
    (run,) = (await orchestrator(project, "runs", "list", "--json")).json()
    assert run["state"] == "cancelled"


@pytest.mark.slow
async def test_the_init_project_runs_in_worker_processes(tmp_path: Path) -> None:
    assert (await orchestrator(tmp_path, "init")).code == 0
    done = await orchestrator(tmp_path, "run", "hello", "--conf", '{"name": "Ada"}')
    assert done.code == 0, done.stdout + done.stderr
    assert "    greeting: Hello, Ada!" in done.stdout
    (run_id,) = await run_ids(tmp_path)
    where = await orchestrator(tmp_path, "tasks", "logs", run_id, "where")
    assert f"as {run_id}" in where.stdout  # the shell task ran, with the run in its environment


# -- dags ---------------------------------------------------------------------------------------


async def test_dags_list_shows_dags_and_counts_import_errors(project: Path) -> None:
    (project / "dags" / "broken.py").write_text("x = 1\nraise ValueError('no config')\n")
    done = await orchestrator(project, "dags", "list")
    assert done.code == 0
    assert "Extract, then summarise" in done.stdout
    assert "Import errors (1):" in done.stdout
    assert "dags/broken.py:2: ValueError: no config" in done.stdout


async def test_dags_list_json(project: Path) -> None:
    (project / "dags" / "broken.py").write_text("def (:\n")
    listing = (await orchestrator(project, "dags", "list", "--json")).json()
    assert [dag["dag_id"] for dag in listing["dags"]] == ["bad", "good", "hang"]
    good = listing["dags"][1]
    assert good["tasks"] == 2 and good["file"] == str(project / "dags" / "pipelines.py")
    (error,) = listing["import_errors"]
    assert error["file"].endswith("broken.py") and error["line"] == 1
    assert "SyntaxError" in error["message"]


async def test_dags_list_keeps_prints_of_dag_files_off_stdout(project: Path) -> None:
    (project / "dags" / "noisy.py").write_text("print('hello from import')\n")
    done = await orchestrator(project, "dags", "list", "--json")
    assert done.json()["import_errors"] == []
    assert "hello from import" in done.stderr


async def test_dags_list_names_a_missing_dags_folder(tmp_path: Path) -> None:
    done = await orchestrator(tmp_path, "dags", "list", "--dags-folder", "nowhere")
    assert "No DAGs in nowhere." in done.stdout
    assert "nowhere does not exist" in done.stdout and "--dags-folder" in done.stdout


# -- runs ---------------------------------------------------------------------------------------


async def test_runs_list_and_filters(project: Path) -> None:
    assert "No runs yet in .orchestrator." in (await orchestrator(project, "runs", "list")).stdout
    await orchestrator(project, "run", "good", "--in-process")
    await orchestrator(project, "run", "bad", "--in-process")
    runs = (await orchestrator(project, "runs", "list", "--json")).json()
    assert [run["dag_id"] for run in runs] == ["bad", "good"]
    assert runs[1]["state"] == "success" and runs[1]["duration"] >= 0
    failed = (await orchestrator(project, "runs", "list", "--state", "failed", "--json")).json()
    assert [run["dag_id"] for run in failed] == ["bad"]
    text = (await orchestrator(project, "runs", "list", "--dag", "good")).stdout
    assert runs[1]["run_id"] in text and runs[0]["run_id"] not in text
    none = await orchestrator(project, "runs", "list", "--dag", "hang")
    assert none.stdout.strip() == "No runs match DAG 'hang'."
    limited = (await orchestrator(project, "runs", "list", "--limit", "1", "--json")).json()
    assert len(limited) == 1


async def test_runs_show(project: Path) -> None:
    await orchestrator(project, "run", "bad", "--in-process")
    (run_id,) = await run_ids(project)
    shown = (await orchestrator(project, "runs", "show", run_id, "--json")).json()
    assert shown["run"]["state"] == "failed"
    (flaky,) = shown["task_instances"]
    assert (flaky["state"], flaky["try_number"]) == ("failed", 2)
    assert flaky["error"] == "RuntimeError: always broken"
    assert flaky["log_path"].endswith("flaky.try-2.log")
    text = (await orchestrator(project, "runs", "show", run_id)).stdout
    assert "RuntimeError: always broken" in text and flaky["log_path"] in text


async def test_runs_show_of_an_unknown_run_lists_recent_ones(project: Path) -> None:
    missing = await orchestrator(project, "runs", "show", "nope")
    assert missing.code == 2
    assert "no run is recorded" in missing.stderr
    await orchestrator(project, "run", "good", "--in-process")
    (run_id,) = await run_ids(project)
    done = await orchestrator(project, "runs", "show", "nope")
    assert done.code == 2
    assert done.stderr.startswith("error: there is no run 'nope'")
    assert run_id in done.stderr
    prefix = await orchestrator(project, "runs", "show", run_id[:8])
    assert f"did you mean '{run_id}'" in prefix.stderr


# -- tasks logs ---------------------------------------------------------------------------------


async def test_tasks_logs_prints_the_latest_try_or_the_one_asked(project: Path) -> None:
    await orchestrator(project, "run", "bad", "--in-process")
    (run_id,) = await run_ids(project)
    latest = await orchestrator(project, "tasks", "logs", run_id, "flaky")
    assert latest.code == 0
    assert "attempt 2" in latest.stdout and "attempt 1" not in latest.stdout
    assert "try-2.log" in latest.stderr  # the path goes to stderr, stdout is the log alone
    first = await orchestrator(project, "tasks", "logs", run_id, "flaky", "--try", "1")
    assert "attempt 1" in first.stdout


async def test_tasks_logs_of_a_try_that_printed_nothing_is_empty_not_an_error(
    project: Path,
) -> None:
    await orchestrator(project, "run", "good", "--in-process")
    (run_id,) = await run_ids(project)
    quiet = await orchestrator(project, "tasks", "logs", run_id, "summarise")
    assert (quiet.code, quiet.stdout) == (0, "")
    assert "summarise.try-1.log" in quiet.stderr
    assert "(empty: the try has written nothing)" in quiet.stderr
    chatty = await orchestrator(project, "tasks", "logs", run_id, "extract")
    assert (chatty.code, chatty.stdout) == (0, "extracting three rows\n")
    assert "(empty" not in chatty.stderr


async def test_tasks_logs_errors_list_what_exists(project: Path) -> None:
    await orchestrator(project, "run", "bad", "--in-process")
    (run_id,) = await run_ids(project)
    no_try = await orchestrator(project, "tasks", "logs", run_id, "flaky", "--try", "5")
    assert no_try.code == 2
    assert "has no try 5; its tries: 1, 2" in no_try.stderr
    no_task = await orchestrator(project, "tasks", "logs", run_id, "flakey")
    assert no_task.code == 2
    assert "has no task 'flakey' (did you mean 'flaky'?); its tasks: 'flaky'" in no_task.stderr
    no_run = await orchestrator(project, "tasks", "logs", "nope", "flaky")
    assert no_run.code == 2 and "there is no run 'nope'" in no_run.stderr
    not_mapped = await orchestrator(project, "tasks", "logs", run_id, "flaky", "--map-index", "0")
    assert not_mapped.code == 2 and "is not expanded" in not_mapped.stderr


# -- db -----------------------------------------------------------------------------------------


async def test_db_check_ok_after_a_run(project: Path) -> None:
    await orchestrator(project, "run", "good", "--in-process")
    done = await orchestrator(project, "db", "check")
    assert (done.code, done.stdout.strip()) == (0, "ok")


async def test_db_check_without_state_says_so(project: Path) -> None:
    done = await orchestrator(project, "db", "check")
    assert done.code == 1
    assert done.stderr.startswith("error: There is no state at")
    assert not (project / ".orchestrator").exists()  # a check never creates anything


async def test_a_corrupted_database_is_reported_not_a_traceback(project: Path) -> None:
    state = project / ".orchestrator"
    state.mkdir()
    (state / "orchestrator.db").write_bytes(b"this is not a database" * 100)
    for args in (("db", "check"), ("runs", "list")):
        done = await orchestrator(project, *args)
        assert done.code == 1, args
        assert done.stderr.startswith("error: ")
        assert "orchestrator.db" in done.stderr and ".recover" in done.stderr
        assert "Traceback" not in done.stderr
    assert (state / "orchestrator.db").read_bytes() == b"this is not a database" * 100
