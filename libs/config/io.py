"""Reading the configuration file only when it is whole.

People edit the INI file by hand while Lookout runs.  Many editors save by truncating the file
and writing it again in place, and a slow one (or a network file system) leaves a window in
which the file holds only its first part.  A read in that window must never be used: the
processor would apply a configuration without most of its cameras, and an API write would
write the half back, losing the rest for good.

:func:`read_settled` therefore reads a file only once it has settled: its status (device,
inode, size, modification time) is the same before and after the read, and either the file
has not been modified for :data:`QUIET_S` seconds, or the same status has been seen for that
long, or it is exactly the file this process last wrote itself (an atomic rename, whole by
construction).  A file that keeps changing for :data:`SETTLE_TIMEOUT_S` seconds is not used:
:class:`ConfigBusy` says so instead.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from libs.config.errors import ConfigError, ConfigProblem

QUIET_S = 0.3
"""Seconds a file must have stayed unmodified before it is read."""
SETTLE_TIMEOUT_S = 10.0
"""How long a read waits for a file that keeps changing before it gives up."""
MAX_CONFIG_BYTES = 1 << 20
"""The largest configuration file read or written (1 MiB)."""

StatKey = tuple[int, int, int, int]

_written: dict[str, StatKey] = {}
_written_lock = threading.Lock()


class ConfigBusy(ConfigError):
    """The file kept changing while it was read (someone is saving it)."""


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def note_written(path: Path) -> None:
    """Remember the status of the file this process just replaced atomically: it is whole,
    so reading it needs no quiet period."""
    key = stat_key(os.stat(path))
    with _written_lock:
        _written[str(Path(path).resolve())] = key


def _trusted(path: Path, key: StatKey) -> bool:
    with _written_lock:
        return _written.get(str(path.resolve())) == key


def _read_once(path: Path, settled: StatKey) -> bytes | None:
    """The bytes of ``path`` if it still has the status ``settled`` (the one judged settled)
    from before the read to after it; None when it changed."""
    with open(path, "rb") as fh:
        before = stat_key(os.fstat(fh.fileno()))
        data = fh.read(MAX_CONFIG_BYTES + 1)
        during = stat_key(os.fstat(fh.fileno()))
    after = stat_key(os.stat(path))
    if settled == before == during == after and len(data) == settled[2]:
        return data
    return None


def read_settled(
    path: Path, quiet_s: float | None = None, timeout_s: float | None = None
) -> tuple[str, StatKey]:
    """The text of ``path`` once it is whole (see the module), with the status it had."""
    quiet = QUIET_S if quiet_s is None else quiet_s
    deadline = time.monotonic() + (SETTLE_TIMEOUT_S if timeout_s is None else timeout_s)
    file = str(path)
    seen: StatKey | None = None
    seen_since = 0.0
    changes = 0
    while True:
        try:
            st = os.stat(path)
        except FileNotFoundError as exc:
            raise ConfigError([ConfigProblem(file, None, None, "file not found")]) from exc
        key = stat_key(st)
        if key[2] > MAX_CONFIG_BYTES:
            raise ConfigError([ConfigProblem(
                file, None, None, f"the file is {key[2]} bytes; at most {MAX_CONFIG_BYTES}")])
        now = time.monotonic()
        if key != seen:
            if seen is not None:
                changes += 1
            seen, seen_since = key, now
        age = time.time() - st.st_mtime_ns / 1e9
        if _trusted(path, key) or age >= quiet or now - seen_since >= quiet:
            data = _read_once(path, key)
            if data is not None:
                try:
                    return data.decode("utf-8"), key
                except UnicodeDecodeError as exc:
                    raise ConfigError(
                        [ConfigProblem(file, None, None, "file is not UTF-8 text")]) from exc
            changes += 1
        if now >= deadline:
            raise ConfigBusy([ConfigProblem(
                file, None, None,
                f"the file is being written (it changed {changes} times while it was read); "
                "it is used once it has been left unchanged for "
                f"{quiet:g} s", "a file nobody is saving; try again when the save is done")])
        wait = quiet - max(age, now - seen_since)
        time.sleep(min(max(wait, 0.01), 0.05))
