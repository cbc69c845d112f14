"""What a try rendered, per try and with secrets masked (`orchestrator tasks rendered`, the run
page), and doc_md on the DAG page and the run page, always as escaped text."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from airflowkit import DAGS, DEADLINE
from clikit import CliCalls
from daskkit import local_cluster
from uikit import ui_serving

from orchestrator.airflow_compat.rendered import masked, read_rendered, sidecar_path
from orchestrator.config import Settings
from orchestrator.loading.dagbag import load_dag_bag
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState

SettingsFactory = Callable[..., Settings]
TOKEN, PASSWORD = "tok-12345", "pw-67890"


@pytest.fixture(autouse=True)
def variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_API_TOKEN", TOKEN)
    monkeypatch.setenv("AIRFLOW_VAR_DB_PASSWORD", PASSWORD)
    monkeypatch.setenv("AIRFLOW_VAR_REGION", "eu-west-1")


@dataclass
class Project(CliCalls):
    state: Path
    dags: Path


async def _run(settings: Settings) -> str:
    async with Engine.open(settings, dagbag=load_dag_bag(DAGS)) as engine:
        with anyio.fail_after(DEADLINE):
            run_id = await engine.trigger("rendered_and_docs")
            assert (await engine.wait(run_id)).state is RunState.SUCCESS
    return run_id


def test_the_cli_shows_a_trys_rendered_fields_with_secrets_masked(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings()
    run_id = anyio.run(_run, settings)  # the CLI runs its own event loop: none may run here
    project = Project(state=settings.state_dir, dags=DAGS)
    said = project.json("tasks", "rendered", run_id, "say")
    assert said["try"] == 1
    assert said["fields"]["bash_command"] == "echo world ***"
    assert said["fields"]["env"] == {"API_TOKEN": "***", "WHO": "world"}
    called = project.json("tasks", "rendered", run_id, "call", "--try", "1")["fields"]
    assert called["op_args"] == ["world", "***"]
    assert called["op_kwargs"] == {"plain": "eu-west-1"}  # not a sensitive name: shown
    text = project.ok("tasks", "rendered", run_id, "say").stdout
    assert "bash_command" in text and "echo world ***" in text
    missing = project.invoke("tasks", "rendered", run_id, "say", "--try", "2")
    assert missing.exit_code != 0
    sidecars = list(settings.state_dir.rglob("*.rendered.json"))
    assert len(sidecars) == 2
    assert not any(TOKEN in p.read_text() or PASSWORD in p.read_text() for p in sidecars)


async def test_the_run_page_shows_rendered_fields_and_docs_escaped(
    make_settings: SettingsFactory,
) -> None:
    dag = load_dag_bag(DAGS).get("rendered_and_docs")
    async with ui_serving(make_settings(), dag) as served:
        with anyio.fail_after(DEADLINE):
            run_id = await served.engine.trigger("rendered_and_docs")
            await served.engine.wait(run_id)
        page = (await served.browser.get(f"/runs/{run_id}?task=say&map_index=-1&try=1")).text
        dag_page = (await served.browser.get("/dags/rendered_and_docs")).text
        plain = (await served.browser.get(f"/runs/{run_id}")).text
    table = page.split('id="rendered-fields"', 1)[1].split("</table>", 1)[0]
    assert "echo world ***" in table and "&#34;API_TOKEN&#34;: &#34;***&#34;" in table
    assert TOKEN not in table  # (the task's own XCom, echoing it, is the task's business)
    assert "Says &lt;b&gt;hello&lt;/b&gt; &lt;script&gt;" in page
    assert "<script>alert" not in page and "<b>hello" not in page
    assert '<pre class="doc" id="dag-doc"># Orders' in dag_page
    assert "&lt;script&gt;alert(&#39;dag&#39;)" in dag_page and "<script>alert" not in dag_page
    assert "Rendered fields" not in plain  # only for a chosen try


def test_masking_hides_known_secrets_and_sensitive_keys() -> None:
    value = {"url": "https://x/?k=s3cr3t", "nested": [{"password": "p"}], "n": 3}
    assert masked(value, ["s3cr3t"]) == {
        "url": "https://x/?k=***",
        "nested": [{"password": "***"}],
        "n": 3,
    }
    assert sidecar_path("/logs/a/try-1.log") == Path("/logs/a/try-1.log.rendered.json")
    assert json.loads(json.dumps(masked(["a"], []))) == ["a"]


@pytest.fixture
def dask_cluster() -> Iterator[Any]:
    """One single-thread Dask worker process on loopback (after `variables`: it inherits them)."""
    pytest.importorskip("distributed")
    with local_cluster() as cluster:
        yield cluster


@pytest.mark.slow
async def test_a_try_on_dask_records_its_rendered_fields_beside_the_daemons_log(
    make_settings: SettingsFactory, dask_cluster: Any
) -> None:
    settings = make_settings(
        in_process=False, executor="dask", dask_address=dask_cluster.scheduler_address
    )
    async with Engine.open(settings, dagbag=load_dag_bag(DAGS)) as engine:
        with anyio.fail_after(DEADLINE):
            run_id = await engine.trigger("rendered_and_docs")
            assert (await engine.wait(run_id)).state is RunState.SUCCESS
        tries = {each.task_id: each for each in await engine.store.list_run_tries(run_id)}
    said = read_rendered(tries["say"].log_path)
    assert said is not None and said["bash_command"] == "echo world ***"
    assert said["env"] == {"API_TOKEN": "***", "WHO": "world"}
    called = read_rendered(tries["call"].log_path)
    assert called is not None and called["op_args"] == ["world", "***"]
