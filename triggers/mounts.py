"""Which file system a directory is on, and whether that file system can be watched.

Network and FUSE file systems deliver no inotify events for changes made on another host, so a
watch there must poll; `/proc/self/mountinfo` says which file system holds a path.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# File systems whose changes made on another host never reach this kernel's inotify.
NETWORK_FILE_SYSTEMS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "sshfs", "9p", "ceph", "glusterfs",
        "davfs", "afs", "lustre", "s3fs", "rclone", "gcsfuse",
    }
)  # fmt: skip


def filesystem_type(path: str, mountinfo: str | None = None) -> str | None:
    """The type of the file system holding `path` (`ext4`, `nfs4`, `fuse.sshfs`), or None.

    Read from `/proc/self/mountinfo` (or the given text): the longest mount point containing
    `path`, the later mount where two share one point. None where there is no mountinfo.
    """
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:  # not Linux
            return None
    found: tuple[int, str] | None = None
    for line in mountinfo.splitlines():
        mount = _parse_mount(line)
        if mount is not None and _is_under(path, mount[0]):
            if found is None or len(mount[0]) >= found[0]:
                found = (len(mount[0]), mount[1])
    return None if found is None else found[1]


def is_network_filesystem(fstype: str | None) -> bool:
    """True for file systems that give no inotify events for changes made elsewhere."""
    if fstype is None:
        return False
    return fstype in NETWORK_FILE_SYSTEMS or fstype.removeprefix("fuse.") in NETWORK_FILE_SYSTEMS


def _parse_mount(line: str) -> tuple[str, str] | None:
    """`(mount point, fs type)` from `id parent dev root mount-point opts [tags] - type ...`."""
    fields = line.split()
    if len(fields) < 7 or "-" not in fields[6:]:
        return None
    separator = fields.index("-", 6)
    if separator + 1 >= len(fields):
        return None
    return _unescape(fields[4]), fields[separator + 1]


def _unescape(text: str) -> str:
    """Mountinfo writes space, tab, newline and backslash as octal escapes (`\\040`)."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), text)


def _is_under(path: str, mount_point: str) -> bool:
    return path == mount_point or path.startswith(os.path.join(mount_point, ""))
