"""The README's snippets do what it says: the first pipeline, its commands, the config."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.config import load_settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
pytestmark = pytest.mark.slow


def block(language: str, containing: str) -> str:
    for body in re.findall(rf"```{language}\n(.*?)```", README, re.DOTALL):
        if containing in body:
            return str(body)
    raise AssertionError(f"README has no {language} block containing {containing!r}")


def orchestrator(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_readme_opens_with_the_two_commands() -> None:
    first = block("sh", "make run")
    assert [line.split("#")[0].strip() for line in first.strip().splitlines()] == [
        "make run",
        "make test",
    ]
    assert README.index("make run") < README.index("## ")


def test_the_first_pipeline_runs_as_the_readme_says(tmp_path: Path) -> None:
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "numbers.py").write_text(block("python", "dags/numbers.py"))
    ran = orchestrator(tmp_path, "run", "numbers", "--conf", '{"n": 10}')
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "285" in ran.stdout  # 0² + 1² + ... + 9²
    run_id = re.search(r"\b(\d{8}T\d{6}Z-[0-9a-f]{12})\b", ran.stdout)
    assert run_id, ran.stdout
    listed = orchestrator(tmp_path, "runs", "list")
    assert listed.returncode == 0 and run_id.group(1) in listed.stdout
    logs = orchestrator(tmp_path, "tasks", "logs", run_id.group(1), "total")
    assert logs.returncode == 0, logs.stderr
    assert "adding 10 squares" in logs.stdout


def test_the_config_snippet_is_valid(tmp_path: Path) -> None:
    (tmp_path / "orchestrator.toml").write_text(block("toml", "[pools]"))
    settings = load_settings(cwd=tmp_path, environ={})
    assert settings.slots == 4
    assert settings.pool_slots() == {"default": 4, "gpu": 1}
    assert settings.state_dir == tmp_path / ".orchestrator"
    assert settings.allowed_roots == (tmp_path / "data",)
    assert (settings.api_host, settings.api_port, settings.max_queued_runs) == (
        "127.0.0.1",
        8686,
        1000,
    )


def test_the_file_sensor_snippet_waits_for_the_file_then_counts_rows(tmp_path: Path) -> None:
    """`orchestrator run arrivals` waits, a `mv` into incoming/ finishes it, as the text says."""
    (tmp_path / "dags").mkdir()
    (tmp_path / "incoming").mkdir()
    (tmp_path / "dags" / "arrivals.py").write_text(block("python", "dags/arrivals.py"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    with subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "run", "arrivals"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:  # plain lines (not a TTY): one per state change
            if "landed" in line and "deferred" in line:
                break
        staged = tmp_path / "batch.csv"
        staged.write_text("a,b\n1,2\n3,4\n5,6\n")
        os.replace(staged, tmp_path / "incoming" / "batch.csv")
        rest = process.stdout.read()
        assert process.wait(timeout=120) == 0, rest
    assert "3" in rest.split("count_rows")[-1]


def test_the_deferral_snippet_resumes_with_the_http_event(tmp_path: Path) -> None:
    from httpserver import Reply, serve

    with serve() as server:
        server.script(
            "/jobs/job-42",
            Reply.json({"state": "running"}),
            Reply.json({"state": "done", "model": "s3://models/42"}),
        )
        source = block("python", "dags/remote_training.py")
        source = source.replace("https://trainer.example.com/jobs", f"{server.url}/jobs")
        source = source.replace("HttpTrigger(url=", "HttpTrigger(poll_interval=0.05, url=")
        (tmp_path / "dags").mkdir()
        (tmp_path / "dags" / "remote_training.py").write_text(source)
        ran = orchestrator(tmp_path, "run", "remote_training")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "job-42: s3://models/42" in ran.stdout


async def test_the_daemon_snippet_runs_on_a_schedule_an_asset_and_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The schedule ticks once (catchup off), the asset starts `train`, files join its batch."""
    import anyio

    from orchestrator.changes import EventRecorded, RunChanged
    from orchestrator.clock import FakeClock
    from orchestrator.config import Settings
    from orchestrator.execution.results import decode_result
    from orchestrator.loading.dagbag import load_dag_bag
    from orchestrator.scheduling.engine import Engine
    from orchestrator.state import RunState

    monkeypatch.chdir(tmp_path)  # `data/labels` is relative to the daemon's folder
    (tmp_path / "dags").mkdir()
    (tmp_path / "data" / "labels").mkdir(parents=True)
    (tmp_path / "dags" / "features.py").write_text(block("python", "dags/features.py"))
    bag = load_dag_bag(tmp_path / "dags")
    assert not bag.errors, bag.errors
    clock = FakeClock(1_780_000_000.0)  # 2026-05-28, long after start_date
    settings = Settings(state_dir=tmp_path / "state", dags_folder=tmp_path / "dags", slots=2)
    settings = Settings(**{**settings.__dict__, "in_process": True})
    finished: dict[str, list[str]] = {"features": [], "train": []}
    async with Engine.open(settings, dagbag=bag, clock=clock, start_runs=True) as engine:
        async with engine.subscribe() as changes:
            with anyio.fail_after(30):
                async for change in changes:
                    if isinstance(change, RunChanged) and change.state is RunState.SUCCESS:
                        finished[change.dag_id].append(change.run_id)
                        if change.dag_id == "features":
                            break
                # The asset update waits for `train`'s debounce; a label file joins it.
                (tmp_path / "data" / "labels" / "batch.json").write_text("{}")
                async for change in changes:
                    if isinstance(change, EventRecorded) and change.source.startswith("File"):
                        break
                clock.advance(61)
                async for change in changes:
                    if isinstance(change, RunChanged) and change.state is RunState.SUCCESS:
                        finished[change.dag_id].append(change.run_id)
                        if change.dag_id == "train":
                            break
        results = await engine.store.get_results(finished["train"][0])
        features = await engine.store.get_run(finished["features"][0])
    assert len(finished["features"]) == 1  # catchup=False: only the latest interval ran
    assert features is not None and features.run_type == "scheduled"
    assert decode_result(results[("train", -1)]) == 2  # the asset update and the label file


def test_the_readme_says_what_url_checks_and_webhook_signatures_cannot_prove() -> None:
    sensors = README[README.index("## Waiting without a slot") : README.index("## Runs that")]
    assert "DNS rebinding" in sensors
    webhooks = README[README.index("## Runs started by a webhook") : README.index("## How it")]
    assert "What a signature proves, and what it does not" in webhooks
    assert "webhook_replay_window" in webhooks


def test_the_alerts_example_loads_and_the_dag_example_imports(tmp_path: Path) -> None:
    (tmp_path / "orchestrator.toml").write_text(block("toml", "[[alerts]]"))
    settings = load_settings(cwd=tmp_path, environ={})
    assert [rule.channels for rule in settings.alerts] == [
        ("ops-slack", "team-mail"),
        ("oncall",),
        ("ops-slack",),
    ]
    proactive = settings.alerts[2]
    assert (proactive.late_after, proactive.silent_for, proactive.max_duration) == (600, 3600, 7200)
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "retrain.py").write_text(block("python", "SlackNotifier"))
    listed = orchestrator(tmp_path, "dags", "list")
    assert listed.returncode == 0 and "retrain_alerts" in listed.stdout, listed.stderr
