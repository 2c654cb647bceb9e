"""Writing a file atomically: a temporary file beside it, flushed, renamed into place."""

from __future__ import annotations

import os
import re
import stat
import tempfile
import time
from pathlib import Path

from greybox.errors import SaveError

__all__ = ["write_atomic"]

#: A temporary file of ours (``.NAME.greybox-PID-RANDOM.tmp``) left by a killed save is
#: removed by the next save in its folder once its process is gone and it has not changed
#: for this many seconds, or in any case after ``_STALE_ALWAYS`` seconds.
_STALE_AFTER = 60.0
_STALE_ALWAYS = 24 * 3600.0
_TEMP = re.compile(r"^\..*\.greybox-(\d+)-[^.]*\.tmp$")


def _umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def _remove_stale_temps(directory: Path) -> None:
    """Delete temporary files that killed saves (of greybox) left in ``directory``."""
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None:
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
            if age > _STALE_ALWAYS or (age > _STALE_AFTER and not _alive(int(m.group(1)))):
                os.unlink(entry.path)
        except OSError:
            continue


def write_atomic(path, write, *, binary: bool = True) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, flush it to disk and
    rename it into place: readers see the old file or the new one, never half of one.

    The file gets the mode of the file it replaces, or that of any new file (``0o666``
    less the umask). Temporary files left behind by killed saves in the same folder are
    removed. A missing folder, or one that cannot be written, raises :class:`SaveError`.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        what = "is not a folder" if directory.exists() else "does not exist"
        raise SaveError(f"cannot save {path}: the folder {directory} {what}")
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = 0o666 & ~_umask()
    _remove_stale_temps(directory)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.greybox-{os.getpid()}-",
                                   suffix=".tmp", dir=directory)
    except OSError as err:
        raise SaveError(f"cannot save {path}: cannot write in the folder {directory} "
                        f"({err.strerror or err})") from None
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else
                                                       {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        if not hasattr(os, "fchmod"):  # pragma: no cover - Windows
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
