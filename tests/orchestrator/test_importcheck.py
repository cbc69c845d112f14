"""No DAG file can stop, hang or bloat the process that loads it.

Each file's import is first tried in a short-lived subprocess under a time and a memory limit
(`loading/importcheck.py`); a file that loops, sleeps, exits, forks, leaves a thread running or
allocates past the limit is an import error with the reason, and is never imported here. The
limits are small so the tests stay fast: a 5 s timeout (a good file starts a checker well within
it even on a loaded machine), 256 MiB of memory.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.config import Settings, load_settings
from orchestrator.daemon.reload import reload_file
from orchestrator.errors import ConfigError
from orchestrator.loading.dagbag import load_dag_bag
from orchestrator.loading.importcheck import ImportLimits, check_files
from orchestrator.scheduling.engine import Engine

LIMITS = ImportLimits(timeout=5.0, max_memory_mb=256)

GOOD = """
from orchestrator.authoring.dag import DAG
from orchestrator.authoring.operators import Shell

with DAG({dag_id!r}):
    Shell("true", task_id="a")
"""

#: Each bad kind of file: its source, the reason it is refused, and the line it is refused at.
BAD_FILES = {
    "loop": ("x = 1\nwhile True:\n    x += 1\n", "import took longer than 5 s", (2, 3)),
    "sleep": ("import time\n\ntime.sleep(3600)\n", "import took longer than 5 s", 3),
    "exit": ("import os\n\nos._exit(3)\n", "the file exited the process (exit code 3)", None),
    "thread": (
        "import threading, time\n\nthreading.Thread(target=time.sleep, args=(3600,)).start()\n",
        "started a thread at import",
        None,
    ),
    "fork": (
        "import os, time\n\nif os.fork() == 0:\n    time.sleep(3600)\n",
        "forked the process at import",
        3,
    ),
    "memory": ("blob = bytearray(600 * 1024 * 1024)\n", "used more than 256 MiB", 1),
}


def write(path: Path, source: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source).lstrip("\n"))
    return str(path)


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_a_bad_file_is_an_import_error_with_its_reason_and_the_others_load(
    tmp_path: Path, kind: str
) -> None:
    source, reason, line = BAD_FILES[kind]
    write(tmp_path / "a_good.py", GOOD.format(dag_id="good_a"))
    bad = write(tmp_path / "b_bad.py", source)
    write(tmp_path / "c_good.py", GOOD.format(dag_id="good_c"))
    bag = load_dag_bag(tmp_path, limits=LIMITS)
    assert sorted(bag.dags) == ["good_a", "good_c"], bag.errors
    [error] = bag.errors
    assert error.file == bad
    assert reason in error.message, error.message
    assert error.line in line if isinstance(line, tuple) else error.line == line


def test_a_good_file_passes_however_large_the_process_that_checks_it(tmp_path: Path) -> None:
    """A checker is judged on its own memory, not on the peak of the process that started it."""
    ballast = bytearray(b"x") * (LIMITS.max_memory_mb + 64) * 2**20  # pages touched: resident
    good = write(tmp_path / "good.py", GOOD.format(dag_id="good"))
    assert check_files([good], LIMITS) == {good: None}
    assert len(ballast) > LIMITS.max_memory_mb * 2**20


def test_the_files_of_a_folder_are_checked_at_once_not_one_after_the_other(tmp_path: Path) -> None:
    """Four files that each sleep past the limit cost about one limit, not four."""
    paths = [write(tmp_path / f"slow_{n}.py", BAD_FILES["sleep"][0]) for n in range(4)]
    verdicts = check_files(paths, ImportLimits(timeout=1.0, max_memory_mb=256))
    assert all(v is not None and "longer than 1 s" in v.message for v in verdicts.values())


def test_a_file_that_raises_or_is_valid_passes_the_check_and_is_imported_here(
    tmp_path: Path,
) -> None:
    broken = write(tmp_path / "broken.py", "1 / 0\n")
    good = write(tmp_path / "good.py", GOOD.format(dag_id="good"))
    assert check_files([broken, good], LIMITS) == {broken: None, good: None}
    bag = load_dag_bag(tmp_path, limits=LIMITS)
    assert list(bag.dags) == ["good"]
    [error] = bag.errors
    assert "ZeroDivisionError" in error.message and error.line == 1


def test_an_unchanged_file_is_checked_once(tmp_path: Path) -> None:
    """The file notes each import's pid: the check's own process, then this one."""
    imports = tmp_path / "imports.txt"
    counting = (
        f"import os\nwith open({str(imports)!r}, 'a') as f:\n    f.write(f'{{os.getpid()}}\\n')\n"
    )
    path = write(tmp_path / "dags" / "counted.py", counting)
    load_dag_bag(tmp_path / "dags", limits=LIMITS)
    load_dag_bag(tmp_path / "dags", limits=LIMITS)
    pids = imports.read_text().split()
    assert len([pid for pid in pids if pid != str(os.getpid())]) == 1
    write(Path(path), counting + "# changed\n")
    load_dag_bag(tmp_path / "dags", limits=LIMITS)
    pids = imports.read_text().split()
    assert len([pid for pid in pids if pid != str(os.getpid())]) == 2


# -- in a running engine ------------------------------------------------------------------------


async def test_a_reload_refuses_a_bad_file_and_takes_it_back_once_fixed(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(dag_import_timeout=5.0)
    write(settings.dags_folder / "good.py", GOOD.format(dag_id="good"))
    path = write(settings.dags_folder / "later.py", GOOD.format(dag_id="later"))
    async with Engine.open(settings) as engine:
        write(Path(path), BAD_FILES["sleep"][0])
        await reload_file(engine, path)
        errors = await engine.store.list_import_errors()
        kept = sorted(engine.dagbag.dags)
        write(Path(path), BAD_FILES["exit"][0])
        await reload_file(engine, path)
        exited = await engine.store.list_import_errors()
        write(Path(path), GOOD.format(dag_id="fixed"))
        await reload_file(engine, path)
        fixed = await engine.store.list_import_errors()
        after_fix = sorted(engine.dagbag.dags)
        os.remove(path)
        await reload_file(engine, path)
        after_delete = sorted(engine.dagbag.dags)
    assert [(error.fileloc, error.line) for error in errors] == [(path, 3)]
    assert "import took longer than 5 s" in errors[0].message
    assert kept == ["good", "later"]  # its last good version goes on
    assert "the file exited the process (exit code 3)" in exited[0].message
    assert fixed == [] and after_fix == ["fixed", "good"]
    assert after_delete == ["good"]


# -- the settings -------------------------------------------------------------------------------


def test_the_import_limits_come_from_the_file_and_the_environment(tmp_path: Path) -> None:
    (tmp_path / "orchestrator.toml").write_text(
        "dag_import_timeout = 5\ndag_import_max_memory_mb = 512\n"
    )
    from_file = load_settings(cwd=tmp_path, environ={})
    assert ImportLimits.of(from_file) == ImportLimits(timeout=5.0, max_memory_mb=512)
    environ = {
        "ORCHESTRATOR_DAG_IMPORT_TIMEOUT": "0.5",
        "ORCHESTRATOR_DAG_IMPORT_MAX_MEMORY_MB": "64",
    }
    from_environ = load_settings(cwd=tmp_path, environ=environ)
    assert ImportLimits.of(from_environ) == ImportLimits(timeout=0.5, max_memory_mb=64)
    assert ImportLimits.of(Settings()) == ImportLimits(timeout=30.0, max_memory_mb=1024)


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("dag_import_timeout", 0, "above 0"),
        ("dag_import_timeout", "soon", "above 0"),
        ("dag_import_max_memory_mb", 8, "at least 32"),
        ("dag_import_max_memory_mb", True, "at least 32"),
    ],
)
def test_bad_import_limits_are_refused(key: str, value: object, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        Settings(**{key: value})  # type: ignore[arg-type]
