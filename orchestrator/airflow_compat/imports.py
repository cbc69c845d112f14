"""`import airflow...` in a DAG file, resolved to this package, whether or not Airflow is installed.

While DAG files load (`airflow_imports()`), and while an Airflow task runs, a meta-path finder
answers every `airflow` / `airflow.*` import from `SURFACE`: each module Airflow 2 or 3 spells
is a thin module whose names are this package's objects. A module not in the table fails the
import at its line, naming the module and what is supported, instead of falling through to a
real Airflow whose classes our engine cannot run. Outside those moments nothing is mapped: the
real `airflow` modules any other code imported are put back as they were.
"""

from __future__ import annotations

import dis
import importlib
import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any

_PACKAGE = "orchestrator.airflow_compat"

_DAG = ("dag:DAG",)
_DAG_DECORATOR = ("dag:dag",)
_OPERATOR = ("baseoperator:BaseOperator", "baseoperator:chain", "baseoperator:cross_downstream")
_XCOM = ("xcom:XComArg",)
_PYTHON = (
    "operators:PythonOperator",
    "operators:BranchPythonOperator",
    "operators:ShortCircuitOperator",
    "context:get_current_context",
    "interpreters:PythonVirtualenvOperator",
    "interpreters:ExternalPythonOperator",
)
_EMPTY = ("operators:EmptyOperator", "operators:DummyOperator")
_BASH = ("operators:BashOperator",)
_LATEST = ("operators:LatestOnlyOperator",)
_TRIGGER_DAG = ("trigger_dagrun:TriggerDagRunOperator",)
_DECORATORS = (
    "decorators:task",
    "decorators:task_group",
    "decorators:setup",
    "decorators:teardown",
    *_DAG_DECORATOR,
)
_GROUP = ("taskgroup:TaskGroup",)
_LABEL = ("taskgroup:Label",)
_RULE = ("trigger_rule:TriggerRule",)
_PARAM = ("models:Param", "models:ParamsDict")
_VARIABLE = ("models:Variable",)
_CONNECTION = ("models:Connection",)
_HOOK = ("models:BaseHook",)
_ASSETS = ("assets:Asset", "assets:Dataset", "assets:AssetAll", "assets:AssetAny")
_EXCEPTIONS = (
    "exceptions:AirflowException",
    "exceptions:AirflowSkipException",
    "exceptions:AirflowFailException",
    "exceptions:AirflowSensorTimeout",
    "exceptions:AirflowNotFoundException",
    "exceptions:AirflowTaskTimeout",
    "exceptions:DuplicateTaskIdFound",
)
_SENSOR_BASE = ("sensors:BaseSensorOperator", "sensors:PokeReturnValue")
_CONTEXT = ("context:Context", "context:get_current_context")
_TRIGGER_TIMETABLES = (
    "timetables:CronTriggerTimetable",
    "timetables:DeltaTriggerTimetable",
    "timetables:MultipleCronTriggerTimetable",
)
_INTERVAL_TIMETABLES = (
    "timetables:CronDataIntervalTimetable",
    "timetables:DeltaDataIntervalTimetable",
)
_TIMETABLES = (
    *_TRIGGER_TIMETABLES,
    *_INTERVAL_TIMETABLES,
    "timetables:EventsTimetable",
    "timetables:AssetOrTimeSchedule",
)

#: Every module an Airflow DAG file may import, with the names it gets: "module:name".
SURFACE: dict[str, Sequence[str]] = {
    "airflow": (*_DAG, *_ASSETS[:2], *_XCOM),
    "airflow.sdk": (
        *_DAG,
        *_DAG_DECORATOR,
        *_OPERATOR,
        *_XCOM,
        *_DECORATORS,
        *_GROUP,
        *_LABEL,
        *_PARAM,
        *_VARIABLE,
        *_CONNECTION,
        *_HOOK,
        *_ASSETS,
        *_SENSOR_BASE,
        *_CONTEXT,
        *_RULE,
        *_TIMETABLES,
    ),
    "airflow.decorators": (*_DECORATORS,),
    "airflow.models": (*_DAG, *_OPERATOR[:1], *_PARAM, *_VARIABLE, *_CONNECTION, *_XCOM),
    "airflow.models.dag": (*_DAG,),
    "airflow.models.baseoperator": _OPERATOR,
    "airflow.models.param": _PARAM,
    "airflow.models.variable": _VARIABLE,
    "airflow.models.connection": _CONNECTION,
    "airflow.models.xcom_arg": _XCOM,
    "airflow.hooks.base": _HOOK,
    "airflow.operators.empty": _EMPTY,
    "airflow.operators.dummy": _EMPTY,
    "airflow.operators.python": _PYTHON,
    "airflow.operators.bash": _BASH,
    "airflow.operators.latest_only": _LATEST,
    "airflow.operators.trigger_dagrun": _TRIGGER_DAG,
    "airflow.utils.task_group": _GROUP,
    "airflow.utils.trigger_rule": _RULE,
    "airflow.utils.edgemodifier": _LABEL,
    "airflow.utils.helpers": _OPERATOR[1:],
    "airflow.utils.context": _CONTEXT,
    "airflow.utils.dates": ("macros:days_ago",),
    "airflow.macros": ("macros:*",),
    "airflow.exceptions": _EXCEPTIONS,
    "airflow.datasets": _ASSETS,
    "airflow.assets": _ASSETS,
    "airflow.timetables.base": ("timetables:Timetable",),
    "airflow.timetables.trigger": _TRIGGER_TIMETABLES,
    "airflow.timetables.interval": _INTERVAL_TIMETABLES,
    "airflow.timetables.events": ("timetables:EventsTimetable",),
    "airflow.timetables.simple": ("timetables:NullTimetable", "timetables:OnceTimetable"),
    "airflow.timetables.assets": ("timetables:AssetOrTimeSchedule",),
    "airflow.timetables.datasets": ("timetables:DatasetOrTimeSchedule",),
    "airflow.sensors.base": _SENSOR_BASE,
    "airflow.sensors.filesystem": ("sensors:FileSensor",),
    "airflow.sensors.python": ("sensors:PythonSensor",),
    "airflow.sensors.bash": ("sensors:BashSensor",),
    "airflow.sensors.time_delta": ("sensors:TimeDeltaSensor", "sensors:TimeDeltaSensorAsync"),
    "airflow.sensors.date_time": ("sensors:DateTimeSensor", "sensors:DateTimeSensorAsync"),
    "airflow.sensors.time_sensor": ("sensors:TimeSensor", "sensors:TimeSensorAsync"),
    "airflow.sensors.weekday": ("sensors:DayOfWeekSensor",),
    "airflow.sensors.external_task": ("sensors:ExternalTaskSensor",),
}
# Airflow 3 moved the operators and sensors to the standard provider, under the same names.
_STANDARD = "airflow.providers.standard"
SURFACE.update(
    {
        f"{_STANDARD}.operators.empty": _EMPTY,
        f"{_STANDARD}.operators.python": _PYTHON,
        f"{_STANDARD}.operators.bash": _BASH,
        f"{_STANDARD}.operators.latest_only": _LATEST,
        f"{_STANDARD}.operators.trigger_dagrun": _TRIGGER_DAG,
        f"{_STANDARD}.sensors.filesystem": SURFACE["airflow.sensors.filesystem"],
        f"{_STANDARD}.sensors.python": SURFACE["airflow.sensors.python"],
        f"{_STANDARD}.sensors.bash": SURFACE["airflow.sensors.bash"],
        f"{_STANDARD}.sensors.time_delta": SURFACE["airflow.sensors.time_delta"],
        f"{_STANDARD}.sensors.date_time": SURFACE["airflow.sensors.date_time"],
        f"{_STANDARD}.sensors.time": SURFACE["airflow.sensors.time_sensor"],
        f"{_STANDARD}.sensors.weekday": SURFACE["airflow.sensors.weekday"],
        f"{_STANDARD}.sensors.external_task": SURFACE["airflow.sensors.external_task"],
        f"{_STANDARD}.utils.skipmixin": (),
    }
)
# Two provider sensors, on the native S3 and HTTP waits; the rest of those providers is refused.
SURFACE.update(
    {
        "airflow.providers.amazon.aws.sensors.s3": ("provider_sensors:S3KeySensor",),
        "airflow.providers.http.sensors.http": ("provider_sensors:HttpSensor",),
    }
)
#: Packages with nothing of their own, only the modules below them.
_PACKAGES = {
    ".".join(name.split(".")[:depth]) for name in SURFACE for depth in range(1, name.count(".") + 1)
} - set(SURFACE)


class UnsupportedAirflowModule(ModuleNotFoundError):
    """A DAG file imports a part of Airflow this package does not provide."""


def unsupported_message(fullname: str) -> str:
    families = sorted({name.rsplit(".", 1)[0] for name in SURFACE if name.count(".") >= 2})
    return (
        f"No module named {fullname!r}: orchestrator runs Airflow DAG files with Airflow's core "
        "and standard-provider API only (DAG, @dag/@task, BaseOperator, the empty, python, "
        "bash, latest_only and trigger_dagrun operators, the standard sensors, TaskGroup, "
        "Param, Variable, Connection, Asset/Dataset, the built-in timetables, the exceptions, "
        "and the amazon "
        "provider's S3KeySensor and the http provider's HttpSensor); other providers and "
        f"internals are not supported. Supported packages: {', '.join(families)}. "
        "See 'Coming from Airflow' in the README."
    )


class _SurfaceLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        fullname = module.__name__
        for export in SURFACE.get(fullname, ()):
            source, name = export.split(":")
            target = importlib.import_module(f"{_PACKAGE}.{source}")
            names = getattr(target, "__all__", ()) if name == "*" else (name,)
            for each in names:
                setattr(module, each, getattr(target, each))
        module.__getattr__ = _missing_name(fullname)  # type: ignore[method-assign]


def _missing_name(fullname: str) -> Any:
    def __getattr__(name: str) -> Any:
        submodule = f"{fullname}.{name}"
        if name.startswith("__") or submodule in SURFACE or submodule in _PACKAGES:
            raise AttributeError(name)  # a submodule: the import system imports it next
        # An ImportError, not AttributeError: `from m import x` then reports this message.
        raise ImportError(
            f"cannot import name {name!r} from {fullname!r}: orchestrator's Airflow "
            f"compatibility provides {', '.join(_names(fullname)) or 'no names'} there "
            "(see 'Coming from Airflow' in the README)",
            name=fullname,
        )

    return __getattr__


def _names(fullname: str) -> list[str]:
    return [export.split(":")[1] for export in SURFACE.get(fullname, ())]


class _AirflowFinder(importlib.abc.MetaPathFinder):
    """Answers `airflow` and `airflow.*` from `SURFACE`; refuses the rest of Airflow."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "airflow" and not fullname.startswith("airflow."):
            return None
        if fullname not in SURFACE and fullname not in _PACKAGES:
            wanted = _imported_name(fullname)
            raise UnsupportedAirflowModule(unsupported_message(wanted), name=wanted)
        is_package = fullname in _PACKAGES or any(
            name.startswith(f"{fullname}.") for name in SURFACE
        )
        spec = importlib.machinery.ModuleSpec(fullname, _SurfaceLoader(), is_package=is_package)
        if is_package:
            spec.submodule_search_locations = []
        return spec


def _imported_name(fullname: str) -> str:
    """The whole dotted name the importing statement asked for (`fullname` may be a parent).

    The import system asks for `airflow.providers.amazon` before `...amazon.aws.operators.s3`;
    the user wrote the latter, so the error names it: read from the importing frame's
    `IMPORT_NAME` instruction.
    """
    frame = sys._getframe(1)
    while frame is not None and (
        frame.f_code.co_filename.startswith("<frozen") or frame.f_code.co_filename == __file__
    ):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return fullname
    for instruction in dis.get_instructions(frame.f_code):
        if instruction.offset == frame.f_lasti and instruction.opname == "IMPORT_NAME":
            name = str(instruction.argval)
            return name if name.startswith(fullname) else fullname
    return fullname


_FINDER = _AirflowFinder()
_lock = threading.RLock()
_depth = 0
_saved: dict[str, ModuleType] = {}


def _is_airflow(name: str) -> bool:
    return name == "airflow" or name.startswith("airflow.")


def _install() -> None:
    for name in [name for name in sys.modules if _is_airflow(name)]:
        _saved[name] = sys.modules.pop(name)  # a real Airflow someone else imported
    sys.meta_path.insert(0, _FINDER)


def _uninstall() -> None:
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
    for name in [name for name in sys.modules if _is_airflow(name)]:
        del sys.modules[name]
    sys.modules.update(_saved)
    _saved.clear()


@contextmanager
def airflow_imports() -> Iterator[None]:
    """Inside the block, `import airflow...` gets this package's surface (re-entrant)."""
    global _depth
    with _lock:
        if _depth == 0:
            _install()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _uninstall()
