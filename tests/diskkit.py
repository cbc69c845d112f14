"""A real small disk for full-disk tests: a tmpfs of a few MiB, and a file that fills it.

```python
with small_tmpfs(tmp_path / "state", "8m") as state:   # skips the test without root
    filler = fill(state)        # the disk is full to the last byte
    filler.unlink()             # room again
```
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (`8m`) mounted at `mount_point` (made here) until the block ends."""
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(folder: Path) -> Path:
    """Fill the disk holding `folder` to its last byte with one file, and return that file."""
    filler = folder / "filler"
    # Unbuffered: a buffered file keeps what did not fit and fails again when it closes, so
    # the test broke whenever the free space was not a multiple of the write size.
    with open(filler, "wb", buffering=0) as file:
        try:
            while True:
                file.write(b"\0" * 65536)  # a short write fills the rest; the next one fails
        except OSError:
            pass
    return filler
