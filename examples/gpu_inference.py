"""A GPU step on a cluster: the scoring task asks for a GPU, so it lands on the worker that has one.

    dask scheduler --host 127.0.0.1 --port 8786 &
    dask worker tcp://127.0.0.1:8786 --nthreads 1 &                        # CPU only
    dask worker tcp://127.0.0.1:8786 --nthreads 1 --resources "GPU=1" &   # the GPU box
    orchestrator daemon --dags-folder examples/ --dask-address tcp://127.0.0.1:8786 &
    orchestrator trigger gpu_inference

`prepare` and `report` run on any worker; `score` only on one started with `GPU=1`, one try at
a time per GPU. With the local executor the resources are not checked: it all runs here.
"""

from __future__ import annotations

import os
import socket

from orchestrator import DAG, task


@task
def prepare() -> list[float]:
    return [0.5, 1.5, 2.5, 3.5]


@task(resources={"GPU": 1})
def score(batch: list[float]) -> dict[str, object]:
    # A real task would load its model onto the GPU here (torch.device("cuda"), ...).
    scores = [round(value * 0.8, 3) for value in batch]
    print(f"scored {len(batch)} rows on {socket.gethostname()} (worker pid {os.getppid()})")
    return {"scores": scores, "worker_pid": os.getppid()}


@task
def report(scored: dict[str, object]) -> int:
    scores = scored["scores"]
    assert isinstance(scores, list)
    print(f"{len(scores)} scores, best {max(scores)}")
    return len(scores)


with DAG("gpu_inference", description="prepare -> score (on a GPU worker) -> report"):
    report(score(prepare()))
