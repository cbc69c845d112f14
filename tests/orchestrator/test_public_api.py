"""`orchestrator.__all__` is honest, and the names resolve to the API, not to submodules."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import orchestrator


def test_every_name_in_all_resolves() -> None:
    for name in orchestrator.__all__:
        assert getattr(orchestrator, name) is not None, name
    assert isinstance(orchestrator.__all__, tuple)
    assert set(dir(orchestrator)) >= set(orchestrator.__all__)


def test_api_names_win_over_submodules_after_everything_is_imported() -> None:
    for module in pkgutil.walk_packages(orchestrator.__path__, "orchestrator."):
        if module.name not in ("orchestrator.cli.__main__", "orchestrator.execution.worker"):
            importlib.import_module(module.name)
    from orchestrator import DAG, dag, task
    from orchestrator.authoring.dag import DagFactory
    from orchestrator.authoring.taskflow import _TaskDecorator

    assert isinstance(task, _TaskDecorator)
    assert callable(dag) and not isinstance(dag, DagFactory)
    assert DAG.__module__ == "orchestrator.authoring.dag"


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        orchestrator.nothing_here  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as error:
        assert "nothing_here" in str(error)
    else:
        raise AssertionError("expected AttributeError")


def test_importing_the_package_stays_light() -> None:
    code = (
        "import orchestrator, sys; "
        "print(sorted(m for m in ('anyio', 'aiosqlite', 'rich') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_triggers_and_sensors_export_their_concrete_classes() -> None:
    import sensors
    import triggers
    from sensors.base import BaseSensor
    from triggers.base import Trigger

    for package in (triggers, sensors):
        assert isinstance(package.__all__, tuple)
        for name in package.__all__:
            assert getattr(package, name) is not None, name
        assert set(dir(package)) == set(package.__all__)
    assert issubclass(triggers.FileTrigger, Trigger)
    assert issubclass(sensors.S3KeySensor, BaseSensor)
