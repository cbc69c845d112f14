"""Import-check verdicts outlive the process: a new `dags list` checks only what changed.

Each DAG file here appends a line to `imports.txt` every time it is imported, so a load that
checks the file adds two lines (the checker's import, then the loading process's own), and a
load that trusts a stored verdict adds one. The checker is a fork of a pre-started server; the
last test holds that the server ends with the process that started it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from crashkit import MARK_VARIABLE, new_marker, orphans, wait_until

from orchestrator.loading.importcheck import ImportLimits, check_files
from orchestrator.loading.verdictcache import FILENAME, read_verdicts

LIMITS = ImportLimits(timeout=5.0, max_memory_mb=256)

COUNTED = """
with open({imports!r}, "a") as imports:
    imports.write("imported\\n")

from orchestrator import DAG, task


@task
def hello() -> int:
    return {value}


with DAG("counted"):
    hello()
"""


def dags_list(project: Path) -> list[str]:
    """`orchestrator dags list --json` in a new process: the DAG ids it found."""
    where = ["--dags-folder", str(project / "dags"), "--state-dir", str(project / "state")]
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "dags", "list", "--json", *where],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    listing = json.loads(done.stdout)
    assert listing["import_errors"] == [], listing
    return [dag["dag_id"] for dag in listing["dags"]]


def imports(project: Path) -> int:
    return len((project / "imports.txt").read_text().splitlines())


def write_counted(project: Path, value: int = 1) -> Path:
    (project / "state").mkdir(exist_ok=True)  # as any run or the daemon leaves it
    path = project / "dags" / "counted.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    imports_file = str(project / "imports.txt")
    path.write_text(textwrap.dedent(COUNTED).format(imports=imports_file, value=value))
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_counted(tmp_path)
    assert dags_list(tmp_path) == ["counted"]
    assert imports(tmp_path) == 2  # checked, then imported
    return tmp_path


def test_a_second_dags_list_in_a_new_process_does_not_check_an_unchanged_file(
    project: Path,
) -> None:
    assert dags_list(project) == ["counted"]
    assert dags_list(project) == ["counted"]
    assert imports(project) == 4  # imported only, twice


def test_an_edit_that_keeps_the_size_and_the_mtime_is_checked_again(project: Path) -> None:
    path = project / "dags" / "counted.py"
    before = path.stat()
    write_counted(project, value=2)  # one digit for another
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    assert dags_list(project) == ["counted"]
    assert imports(project) == 4


def test_a_touched_file_is_checked_again(project: Path) -> None:
    path = project / "dags" / "counted.py"
    mtime = path.stat().st_mtime_ns
    os.utime(path, ns=(mtime + 10**9, mtime + 10**9))
    assert dags_list(project) == ["counted"]
    assert imports(project) == 4


def test_a_file_whose_helper_changed_is_checked_again(tmp_path: Path) -> None:
    """A helper edited to loop would otherwise hang the next process that trusts the file."""
    helper = tmp_path / "dags" / "_helper.py"
    write_counted(tmp_path)
    path = tmp_path / "dags" / "counted.py"
    path.write_text("import _helper\n" + path.read_text())
    helper.write_text("VALUE = 1\n")
    dags_list(tmp_path)
    helper.write_text("VALUE = 22\n")
    assert dags_list(tmp_path) == ["counted"]
    assert imports(tmp_path) == 4


HOSTILE = {
    "not json": b"\x00\xffnot json",
    "a list": b"[1, 2, 3]",
    "another format": b'{"format": 99, "verdicts": {}}',
    "deep nesting": b"[" * 200_000,
    "too large": b'{"format": 1, "verdicts": {}, "padding": "' + b"x" * (9 << 20) + b'"}',
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_damaged_or_hostile_verdict_file_is_ignored_and_rebuilt(
    tmp_path: Path, kind: str
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / FILENAME).write_bytes(HOSTILE[kind])
    good = tmp_path / "good.py"
    good.write_text("X = 1\n")
    assert check_files([str(good)], LIMITS, state_dir=state) == {str(good): None}
    assert list(read_verdicts(state)) == [str(good)]


def test_a_forged_pass_from_another_checker_version_is_not_trusted(tmp_path: Path) -> None:
    exits = tmp_path / "exits.py"
    exits.write_text("import os\nos._exit(3)\n")
    status = exits.stat()
    digest = hashlib.sha256(exits.read_bytes()).hexdigest()
    forged = {
        "file": [status.st_size, status.st_mtime_ns, digest],
        "limits": [5.0, 256],
        "problem": None,
        "line": None,
        "modules": [],
        "checker": "an-older-one",
    }
    state = tmp_path / "state"
    state.mkdir()
    (state / FILENAME).write_text(json.dumps({"format": 1, "verdicts": {str(exits): forged}}))
    [verdict] = check_files([str(exits)], LIMITS, state_dir=state).values()
    assert verdict is not None and "exit code 3" in verdict.message


def test_a_state_directory_that_cannot_be_written_still_loads(tmp_path: Path) -> None:
    """Tests run as root, which writes anywhere: a state directory under a regular file is
    one that cannot be written (the read-only mount is in cli/test_readonly_state.py)."""
    (tmp_path / "not-a-folder").write_text("")
    good = tmp_path / "good.py"
    good.write_text("X = 1\n")
    state = tmp_path / "not-a-folder" / "state"
    assert check_files([str(good)], LIMITS, state_dir=state) == {str(good): None}


def test_a_missing_state_directory_is_not_made_for_the_verdicts(tmp_path: Path) -> None:
    """A command that only reads (`dags list` in a new project) leaves nothing behind."""
    good = tmp_path / "good.py"
    good.write_text("X = 1\n")
    state = tmp_path / "state"
    assert check_files([str(good)], LIMITS, state_dir=state) == {str(good): None}
    assert not state.exists()


def test_the_verdict_file_keeps_only_files_still_present(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    paths = [tmp_path / f"dag_{n}.py" for n in range(3)]
    for path in paths:
        path.write_text("X = 1\n")
    check_files([str(path) for path in paths], LIMITS, state_dir=state)
    paths[0].unlink()
    paths[1].write_text("X = 2\n")
    check_files([str(paths[1])], LIMITS, state_dir=state)
    assert sorted(read_verdicts(state)) == [str(paths[1]), str(paths[2])]


CLIENT = """
import sys
from orchestrator.loading.importcheck import ImportLimits, check_files

check_files([sys.argv[1]], ImportLimits(timeout=5.0, max_memory_mb=256))
print("checked", flush=True)
sys.stdin.read()
"""


def test_the_check_server_ends_with_the_process_that_started_it(tmp_path: Path) -> None:
    good = tmp_path / "good.py"
    good.write_text("X = 1\n")
    marker = new_marker()
    with subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(good)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, MARK_VARIABLE: marker},
    ) as client:
        try:
            assert client.stdout is not None and client.stdout.readline() == b"checked\n"
            assert len(orphans(marker)) == 2  # the client and its check server
        finally:
            os.kill(client.pid, signal.SIGKILL)
    wait_until(lambda: not orphans(marker), 10, "the check server to end with its client")
