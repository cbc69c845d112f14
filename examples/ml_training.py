"""Train a classifier end to end: ingest -> validate -> preprocess -> train -> evaluate -> deploy.

Run it with `orchestrator run ml_training --dags-folder examples` (that is what `make run` does).
`ml_training_on_arrival` is the same pipeline started by data: its first task is a file sensor
that waits, holding no worker slot, until a CSV lands in `incoming_dir`.
`ml_retrain_on_new_data` needs no sensor: under `orchestrator daemon`, each CSV that lands in
`data/incoming` starts a run of its own, with the file's path in `conf["path"]`.
Pass `--conf '{"path": "my.csv"}'` to train on your own CSV (numeric feature columns and a 0/1
`target` column); without it, the breast-cancer data set that ships with scikit-learn is used.

Large data moves between tasks by reference: each task writes files under
`<data_dir>/<run_id>/` and returns their paths; only small JSON values go through the store.
The model registry is a folder of versioned models with their metrics; `deploy` promotes a new
version only if it beats the current one on `metric`.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import Any

from orchestrator import DAG, TaskContext, dag, task
from sensors import FileSensor
from triggers import FileTrigger

MIN_ROWS = 50


def _run_dir(context: TaskContext) -> Path:
    folder = Path(context.params["data_dir"]) / context.run_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@task
def ingest(landed: dict[str, Any] | None = None, *, context: TaskContext) -> dict[str, Any]:
    """Copy the input CSV into the run's folder (or write the sample data set there).

    The CSV is the file a sensor saw land (`landed`), else the run's `conf["path"]`.
    """
    target = _run_dir(context) / "raw.csv"
    source = landed["path"] if landed else context.conf.get("path")
    if source:
        shutil.copyfile(source, target)
    else:
        from sklearn.datasets import load_breast_cancer

        data = load_breast_cancer()
        with target.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([*(name.replace(" ", "_") for name in data.feature_names), "target"])
            writer.writerows(
                [*row, label] for row, label in zip(data.data, data.target, strict=True)
            )
    print(f"ingested {target}")
    return {"path": str(target)}


@task
def validate(batch: dict[str, Any]) -> dict[str, Any]:
    """Refuse data that would train a bad model: missing labels, NaNs, too few rows, one class."""
    import numpy as np

    with open(batch["path"], newline="") as handle:
        header = next(csv.reader(handle))
    if "target" not in header:
        raise ValueError(f"{batch['path']}: no 'target' column (columns: {', '.join(header)})")
    table = np.genfromtxt(batch["path"], delimiter=",", skip_header=1)
    if table.ndim != 2 or len(table) < MIN_ROWS:
        raise ValueError(f"{batch['path']}: {len(table)} rows, need at least {MIN_ROWS}")
    if np.isnan(table).any():
        rows = sorted({int(r) + 2 for r in np.argwhere(np.isnan(table))[:, 0]})[:5]
        raise ValueError(f"{batch['path']}: empty or non-numeric values on lines {rows}")
    labels = set(table[:, header.index("target")].tolist())
    if labels != {0.0, 1.0}:
        raise ValueError(f"{batch['path']}: target must hold both 0 and 1, found {sorted(labels)}")
    print(f"validated {len(table)} rows, {len(header) - 1} features")
    return {**batch, "rows": len(table), "features": len(header) - 1}


@task
def preprocess(batch: dict[str, Any], context: TaskContext) -> dict[str, Any]:
    """Split train/test (stratified, seeded) and standardise with statistics from train only."""
    import numpy as np
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    with open(batch["path"], newline="") as handle:
        header = next(csv.reader(handle))
    table = np.genfromtxt(batch["path"], delimiter=",", skip_header=1)
    label = header.index("target")
    x, y = np.delete(table, label, axis=1), table[:, label].astype(int)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, stratify=y, random_state=context.params["seed"]
    )
    scaler = StandardScaler().fit(x_train)
    path = _run_dir(context) / "features.npz"
    np.savez(
        path,
        x_train=scaler.transform(x_train),
        x_test=scaler.transform(x_test),
        y_train=y_train,
        y_test=y_test,
    )
    return {"path": str(path), "train_rows": len(y_train), "test_rows": len(y_test)}


@task(retries=1, retry_delay=1)
def train(features: dict[str, Any], context: TaskContext) -> dict[str, Any]:
    """Fit a logistic regression; the model file goes next to the features."""
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    data = np.load(features["path"])
    model = LogisticRegression(C=context.params["C"], max_iter=1000)
    model.fit(data["x_train"], data["y_train"])
    path = _run_dir(context) / "model.joblib"
    joblib.dump(model, path)
    print(f"trained on {features['train_rows']} rows")
    return {"model": str(path), "features": features["path"]}


@task
def evaluate(trained: dict[str, Any]) -> dict[str, Any]:
    """Score the model on the held-out rows."""
    import joblib
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    data = np.load(trained["features"])
    model = joblib.load(trained["model"])
    predicted = model.predict(data["x_test"])
    scores = model.predict_proba(data["x_test"])[:, 1]
    metrics = {
        "accuracy": round(float(accuracy_score(data["y_test"], predicted)), 4),
        "f1": round(float(f1_score(data["y_test"], predicted)), 4),
        "roc_auc": round(float(roc_auc_score(data["y_test"], scores)), 4),
    }
    print(f"metrics: {metrics}")
    return {"model": trained["model"], "metrics": metrics}


@task
def deploy(evaluation: dict[str, Any], context: TaskContext) -> dict[str, Any]:
    """Register the model as a new version; promote it only if it beats the current one."""
    registry = Path(context.params["registry_dir"]) / context.dag_id
    metric = context.params["metric"]
    version = _next_version(registry)
    folder = registry / version
    folder.mkdir(parents=True)
    shutil.copyfile(evaluation["model"], folder / "model.joblib")
    (folder / "metrics.json").write_text(json.dumps(evaluation["metrics"], indent=2))
    current = _current(registry)
    score = evaluation["metrics"][metric]
    promoted = current is None or score > current["metrics"][metric]
    if promoted:
        _write_atomically(
            registry / "current.json",
            {"version": version, "metrics": evaluation["metrics"], "run_id": context.run_id},
        )
    best = version if promoted else current["version"] if current else version
    return {
        "model_path": str((folder / "model.joblib").resolve()),
        "version": version,
        metric: score,
        "promoted": promoted,
        "current_version": best,
    }


def _next_version(registry: Path) -> str:
    existing = [int(p.name[1:]) for p in registry.glob("v[0-9]*") if p.name[1:].isdigit()]
    return f"v{max(existing, default=0) + 1:04d}"


def _current(registry: Path) -> dict[str, Any] | None:
    pointer = registry / "current.json"
    return json.loads(pointer.read_text()) if pointer.exists() else None


def _write_atomically(path: Path, value: dict[str, Any]) -> None:
    """Readers see the old pointer or the new one, never half a file."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(value, indent=2))
    os.replace(temporary, path)


with DAG(
    "ml_training",
    description="Train, evaluate and (if better) deploy a classifier",
    params={"data_dir": "data", "registry_dir": "models", "C": 1.0, "seed": 7, "metric": "f1"},
    max_active_runs=1,
):
    deploy(evaluate(train(preprocess(validate(ingest())))))


@dag(
    dag_id="ml_training_on_arrival",
    description="Wait for a CSV to land, then train, evaluate and (if better) deploy",
    max_active_runs=1,
)
def ml_training_on_arrival(
    incoming_dir: str = "data/arrivals",
    pattern: str = "*.csv",
    data_dir: str = "data",
    registry_dir: str = "models",
    C: float = 1.0,
    seed: int = 7,
    metric: str = "f1",
) -> None:
    # Write the CSV elsewhere and `mv` it into incoming_dir: a rename lands it whole.
    landed = FileSensor(task_id="landed", directory=incoming_dir, pattern=pattern)
    deploy(evaluate(train(preprocess(validate(ingest(landed.output))))))


# Under `orchestrator daemon`, every CSV copied into data/incoming starts one training run with
# that file as its input (`conf["path"]`); a burst of files queues behind max_active_runs=1.
# `stable_for` lets a plain `cp` finish writing before the run starts (a `mv` lands at once).
with DAG(
    "ml_retrain_on_new_data",
    description="Train, evaluate and (if better) deploy on every CSV that lands in data/incoming",
    params={"data_dir": "data", "registry_dir": "models", "C": 1.0, "seed": 7, "metric": "f1"},
    run_on=FileTrigger(directory="data/incoming", pattern="*.csv", stable_for=0.5),
    max_active_runs=1,
):
    deploy(evaluate(train(preprocess(validate(ingest())))))
