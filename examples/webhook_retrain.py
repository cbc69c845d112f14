"""Retrain on every push to main: a DAG started by a signed GitHub webhook.

Nothing here knows about HTTP. The webhook's definition does the mapping, once, outside the
code (see the README, "Runs started by a webhook"):

    orchestrator webhooks add retrain --dag retrain_on_push --secret-env RETRAIN_SECRET \\
      --event push --filter ref=refs/heads/main --conf sha=after --conf branch=ref

so each push to main starts one run whose `context.conf` holds the pushed commit (`sha`, the
payload's `after`) and its branch (`branch`, the payload's `ref`). A redelivered push (same
X-GitHub-Delivery) starts no second run.

The training step is small but real, as in `ml_training.py`: a data set made from the commit
(here generated, seeded by the sha, where a real project would read the data that commit
points to), a logistic regression, its metrics on held-out rows, and a model registered
under the commit it was trained from. By hand:

    orchestrator run retrain_on_push --dags-folder examples \\
      --conf '{"sha": "9fceb02d0ae598e95dc970b74767f19372d61af8", "branch": "refs/heads/main"}'
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from orchestrator import DAG, TaskContext, task

_SHA = re.compile(r"[0-9a-f]{7,64}")


def _run_dir(context: TaskContext) -> Path:
    folder = Path(context.params["data_dir"]) / context.run_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@task
def checkout(context: TaskContext) -> dict[str, Any]:
    """The commit the push names, and the training data made from it."""
    import numpy as np
    from sklearn.datasets import make_classification

    sha, branch = context.conf.get("sha"), context.conf.get("branch")
    if not isinstance(sha, str) or not _SHA.fullmatch(sha):
        raise ValueError(
            f"conf['sha'] must be a commit sha (hex), got {sha!r}: the webhook maps it with "
            '--conf sha=after; by hand, pass --conf \'{"sha": "<commit>"}\''
        )
    x, y = make_classification(
        n_samples=context.params["samples"], n_features=8, random_state=int(sha[:8], 16)
    )
    path = _run_dir(context) / "data.npz"
    np.savez(path, x=x, y=y)
    print(f"checked out {sha[:12]} on {branch}: {len(y)} rows")
    return {"sha": sha, "branch": branch, "data": str(path)}


@task
def train(commit: dict[str, Any], context: TaskContext) -> dict[str, Any]:
    """Fit a logistic regression on three quarters of the rows (split seeded, so repeatable)."""
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    data = np.load(commit["data"])
    x_train, x_test, y_train, y_test = train_test_split(
        data["x"], data["y"], test_size=0.25, stratify=data["y"], random_state=7
    )
    model = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    folder = _run_dir(context)
    joblib.dump(model, folder / "model.joblib")
    np.savez(folder / "test.npz", x=x_test, y=y_test)
    print(f"trained on {len(y_train)} rows")
    return {**commit, "model": str(folder / "model.joblib"), "test": str(folder / "test.npz")}


@task
def evaluate(trained: dict[str, Any]) -> dict[str, Any]:
    """Score the model on the rows it never saw."""
    import joblib
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score

    data = np.load(trained["test"])
    predicted = joblib.load(trained["model"]).predict(data["x"])
    metrics = {
        "accuracy": round(float(accuracy_score(data["y"], predicted)), 4),
        "f1": round(float(f1_score(data["y"], predicted)), 4),
    }
    print(f"metrics: {metrics}")
    return {**trained, "metrics": metrics}


@task
def register(evaluation: dict[str, Any], context: TaskContext) -> dict[str, Any]:
    """Keep the model under the commit it came from, with what it scored and which run made it."""
    folder = Path(context.params["registry_dir"]) / context.dag_id / evaluation["sha"][:12]
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(evaluation["model"], folder / "model.joblib")
    card = {key: evaluation[key] for key in ("sha", "branch", "metrics")}
    (folder / "card.json").write_text(json.dumps({**card, "run_id": context.run_id}, indent=2))
    return {**card, "model_path": str((folder / "model.joblib").resolve())}


with DAG(
    "retrain_on_push",
    description="Retrain and register a model for each push to main (started by a webhook)",
    params={"data_dir": "data", "registry_dir": "models", "samples": 400},
    max_active_runs=2,
):
    register(evaluate(train(checkout())))
