"""How fast and how big the web UI's pages are on a busy state directory, and the loop's lag.

    .venv/bin/python bench/ui.py [--runs 10000] [--task-instances 100000] [--repeat 20]
                                 [--clients 20] [--hammer-seconds 3]

Seeds a state directory with `ui_data.seed_ui_data` (10,000 runs, 100,000 task instances; DAG
`wide` has 200 tasks and 50 runs), opens an engine on it with DAG objects matching the
seeded ids, serves the API and the UI on a loopback port in this process, signs in, and for
each page prints the median time of `--repeat` requests (client and server in one process,
so this is the server's time plus a loopback round trip) and the page's size, raw and as sent.
Then `--clients` clients in another process hammer the wide DAG's grid for `--hammer-seconds`
while a task in the server's event loop sleeps 10 ms again and again: its oversleep is the lag.

Targets: at most 100 ms and 200 KB a page, and a loop lag under 50 ms while hammered.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import anyio
import httpx
from machine import machine  # bench/ is on the path when this runs as a script
from ui_data import WIDE, UiData, seed_ui_data

from orchestrator import DAG, task
from orchestrator.api.context import ApiContext
from orchestrator.api.registry import ApiRegistry
from orchestrator.api.server import serve_api
from orchestrator.config import Settings
from orchestrator.loading.dagbag import DagBag
from orchestrator.scheduling.engine import Engine
from orchestrator.ui.app import build_app
from orchestrator.ui.sessions import COOKIE_NAME

LAYER = 20  # the wide DAG's graph: layers of 20 tasks, each after the one above it
PROBE_SECONDS = 0.010


def dag_of(dag_id: str, task_ids: list[str]) -> DAG:
    """A DAG with the seeded ids: each task runs after the one `LAYER` places before it."""
    with DAG(dag_id, description=f"seeded {dag_id}") as dag:
        made = []
        for task_id in task_ids:

            @task(task_id=task_id)
            def step() -> None:
                return None

            made.append(step())
            if len(made) > LAYER:
                made[-1 - LAYER] >> made[-1]
    return dag


def bag_of_seeded(data: UiData, folder: Path) -> DagBag:
    # Each DAG has the tasks of its newest run: the two seeded running runs are recovered by
    # the engine, which expects an instance of every task of the DAG.
    newest = {run.dag_id: run.run_id for run in data.runs}
    per_dag: dict[str, set[str]] = defaultdict(set)
    for ti in data.task_instances:
        if newest.get(_dag_of(ti.run_id)) == ti.run_id:
            per_dag[_dag_of(ti.run_id)].add(ti.task_id)
    dags = {
        record.dag_id: dag_of(record.dag_id, sorted(per_dag[record.dag_id])) for record in data.dags
    }
    return DagBag(folder=folder, dags=dags, files={d: dag.site.file for d, dag in dags.items()})


def _dag_of(run_id: str) -> str:
    return run_id.rsplit("-", 1)[0]  # seeded run ids are <dag_id>-<index>


async def timed(client: httpx.AsyncClient, path: str, repeat: int) -> tuple[float, int, int, str]:
    """Median ms of `repeat` GETs (after one to warm up), raw bytes, bytes sent, encoding."""
    answer = await client.get(path)
    answer.raise_for_status()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        answer = await client.get(path)
        samples.append((time.perf_counter() - start) * 1000)
        answer.raise_for_status()
    encoding = answer.headers.get("content-encoding", "identity")
    return statistics.median(samples), len(answer.content), answer.num_bytes_downloaded, encoding


async def hammer(url: str, cookie: str, path: str, clients: int, seconds: float) -> str:
    """`clients` clients in another process GET `path` for `seconds`; the loop's lag here.

    The clients run in their own process: in this one, parsing twenty 150 KB answers would
    be lag of the benchmark's own making.
    """
    timed: list[tuple[float, float]] = []  # (seconds since the hammering began, lag in ms)
    done = anyio.Event()
    began = time.perf_counter()

    async def probe() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await anyio.sleep(PROBE_SECONDS)
            timed.append((start - began, (time.perf_counter() - start - PROBE_SECONDS) * 1000))

    command = [sys.executable, __file__, "--hammer", url, cookie, path, str(clients), str(seconds)]
    async with anyio.create_task_group() as group:
        group.start_soon(probe)
        finished = await anyio.run_process(command)
        done.set()
    lags = sorted(lag for _, lag in timed)
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
    at, worst = max(timed, key=lambda sample: sample[1])
    return (
        f"{clients} clients on {path} for {seconds:g} s: {finished.stdout.decode().strip()}; "
        f"loop lag (10 ms sleeps, {len(lags)} samples) p99 {p99:.1f} ms, "
        f"max {worst:.1f} ms at {at:.2f} s (the client process starts at 0 s)"
    )


async def clients_hammering(url: str, cookie: str, path: str, clients: int, seconds: float) -> None:
    """The other process of `hammer`: prints how many pages a second it got."""
    served = 0
    done = anyio.Event()

    async def client() -> None:
        nonlocal served
        cookies = {COOKIE_NAME: cookie}
        async with httpx.AsyncClient(base_url=url, cookies=cookies, timeout=60) as browser:
            while not done.is_set():
                (await browser.get(path)).raise_for_status()
                served += 1

    async with anyio.create_task_group() as group:
        for _ in range(clients):
            group.start_soon(client)
        await anyio.sleep(seconds)
        done.set()
    print(f"{served / seconds:.0f} pages/s")


async def main(arguments: argparse.Namespace) -> None:
    print(machine())
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    with tempfile.TemporaryDirectory() as root:
        settings = Settings(
            state_dir=Path(root) / "state",
            dags_folder=Path(root) / "dags",
            in_process=True,
            api_port=0,
            slots=2,
        )
        data = await seed_ui_data(
            settings.state_dir, runs=arguments.runs, task_instances=arguments.task_instances
        )
        print(f"seeded {len(data.runs)} runs, {len(data.task_instances)} task instances")
        await serve_and_measure(settings, data, arguments)


async def serve_and_measure(
    settings: Settings, data: UiData, arguments: argparse.Namespace
) -> None:
    bag = bag_of_seeded(data, settings.dags_folder)
    async with Engine.open(settings, dagbag=bag) as engine:
        registry = await ApiRegistry.load(engine.store, environ={})
        app, ui = build_app(ApiContext(engine, registry))
        _, token = await registry.create_token(
            engine.store, "bench", "admin", now=engine.clock.now(), expires_at=None
        )
        async with anyio.create_task_group() as group:
            url = await group.start(serve_api, app, settings)
            async with httpx.AsyncClient(base_url=url, timeout=60) as browser:
                signed = await browser.post("/login", data={"token": token})
                assert signed.status_code == 303, signed.text
                await measure_pages(browser, data, arguments.repeat)
                cookie = browser.cookies[COOKIE_NAME]
                wide = f"/dags/{WIDE}"
                print(await hammer(url, cookie, wide, arguments.clients, arguments.hammer_seconds))
            group.cancel_scope.cancel()
        ui.close()


def pages(data: UiData) -> list[str]:
    wide_runs = [run for run in data.runs if run.dag_id == WIDE]
    paths = ["/", "/dags", f"/dags/{WIDE}", f"/dags/{WIDE}/graph", "/triggers", "/events"]
    try:
        import orchestrator.ui.run_page  # noqa: F401 - the run page, once it is merged
    except ImportError:
        pass
    else:
        paths.append(f"/runs/{wide_runs[-3].run_id}")
    return paths


async def measure_pages(browser: httpx.AsyncClient, data: UiData, repeat: int) -> None:
    print(f"page: median of {repeat} requests, ms | bytes raw | bytes sent (encoding)")
    for path in pages(data):
        milliseconds, raw, sent, encoding = await timed(browser, path, repeat)
        print(f"  {path:<24} {milliseconds:8.1f} ms {raw:>9,} B {sent:>9,} B ({encoding})")


if __name__ == "__main__" and sys.argv[1:2] == ["--hammer"]:
    _, _, url, cookie, path, clients, seconds = sys.argv
    anyio.run(clients_hammering, url, cookie, path, int(clients), float(seconds))
elif __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--task-instances", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--hammer-seconds", type=float, default=3.0)
    anyio.run(main, parser.parse_args())
