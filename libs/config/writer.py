"""Atomic, comment-keeping writes of the INI file.

A change is applied to the file's text with ConfigUpdater (which keeps comments, order and
blank lines), the result is validated with the same models as at start-up, and only a valid
result replaces the file: temporary file in the same folder, fsync, rename, fsync of the
folder.  Writers are serialised with an advisory lock, so concurrent writes never interleave.
A value that could smuggle a new key or section (a newline, a control character) is refused,
and so is a value longer than :data:`MAX_VALUE_CHARS` or a result larger than
:data:`~libs.config.io.MAX_CONFIG_BYTES` (so the file can always be sent back whole).

People also edit the file by hand, without the lock.  A write reads the file only once it is
whole (:func:`~libs.config.io.read_settled`), and just before its rename compares the file on
disk with what it read: when someone saved the file meanwhile, the change is applied again to
the new text (:data:`WRITE_ATTEMPTS` times at most, then :class:`~libs.config.io.ConfigBusy`).
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from configupdater import ConfigUpdater

from libs.config.errors import ConfigError, ConfigProblem
from libs.config.io import (
    MAX_CONFIG_BYTES,
    ConfigBusy,
    StatKey,
    note_written,
    read_settled,
    stat_key,
)
from libs.config.loader import parse_config_text
from libs.config.models import LookoutConfig

R = TypeVar("R")
KEY_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
SECTION_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,79}$")
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f]")
MAX_VALUE_CHARS = 65536
"""The longest value one key may hold (a long zone list is a few kilobytes)."""
WRITE_ATTEMPTS = 3


@dataclass
class ConfigChange:
    """Set keys of one section (creating it if needed), or remove the section.

    With ``replace=True`` keys of the section that are not in ``values`` are removed; the
    keys in ``unset`` are removed in any case (their defaults apply).
    """

    section: str
    values: dict[str, str] = field(default_factory=dict)
    remove: bool = False
    replace: bool = False
    unset: frozenset[str] = frozenset()


class FileChanged(ConfigBusy):
    """The file on disk is not the one a write read: someone saved it meanwhile."""


def check_ini_safe(section: str, values: dict[str, str]) -> None:
    problems: list[ConfigProblem] = []
    if not SECTION_PATTERN.match(section):
        problems.append(ConfigProblem("request", section, None, "invalid section name"))
    for key, value in values.items():
        if not KEY_PATTERN.match(key):
            problems.append(ConfigProblem("request", section, key, "invalid key name"))
        if _FORBIDDEN.search(value):
            problems.append(
                ConfigProblem(
                    "request", section, key, "value contains a newline or control character"
                )
            )
        elif len(value) > MAX_VALUE_CHARS:
            problems.append(
                ConfigProblem(
                    "request", section, key, f"value is {len(value)} characters long",
                    f"at most {MAX_VALUE_CHARS} characters",
                )
            )
    if problems:
        raise ConfigError(problems)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    lock_path = path.with_name(f".{path.name}.lock")
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def apply_changes(text: str, changes: list[ConfigChange]) -> str:
    updater = ConfigUpdater(delimiters=("=",))
    updater.optionxform = str  # type: ignore[assignment,method-assign]
    updater.read_string(text)
    for change in changes:
        if change.remove:
            if updater.has_section(change.section):
                updater.remove_section(change.section)
            continue
        check_ini_safe(change.section, change.values)
        check_ini_safe(change.section, dict.fromkeys(change.unset, ""))
        if not updater.has_section(change.section):
            updater.add_section(change.section)
        sect = updater[change.section]
        for key in list(sect.keys()):
            if key in change.unset or (change.replace and key not in change.values):
                del sect[key]
        for key, value in change.values.items():
            if key not in change.unset:
                sect[key] = value
    new_text = str(updater)
    size = len(new_text.encode("utf-8"))
    if size > MAX_CONFIG_BYTES:
        raise ConfigError([ConfigProblem(
            "request", None, None, f"the configuration would be {size} bytes",
            f"at most {MAX_CONFIG_BYTES} bytes")])
    return new_text


def _unchanged(path: Path, expected: tuple[StatKey, str] | None) -> bool:
    """Whether the file is still exactly the one read (status and text)."""
    if expected is None:
        return True
    key, text = expected
    try:
        if stat_key(os.stat(path)) != key:
            return False
        return path.read_bytes() == text.encode("utf-8")
    except OSError:
        return False


def atomic_write(path: Path, text: str, expected: tuple[StatKey, str] | None = None) -> None:
    """Replace ``path`` with ``text`` (temporary file, fsync, rename, fsync of the folder).

    With ``expected`` (the status and text the change was made from), the file on disk is
    compared with it just before the rename; :class:`FileChanged` when it differs, and
    nothing is written."""
    folder = path.resolve().parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        if not _unchanged(path, expected):
            raise FileChanged([ConfigProblem(
                str(path), None, None, "the file was saved by someone else during this write",
                "try again")])
        os.replace(tmp, path)
        note_written(path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def rewrite(path: Path, edit: Callable[[str], tuple[str | None, R]]) -> tuple[R, bool]:
    """Edit the file at ``path`` under the writer's lock: ``edit(text)`` gets the file as
    it is (only a whole file is read: a hand edit being saved is waited for) and returns the
    new text (None: nothing to write) and a result.  The new text replaces the file only if
    the file is still the one read; else ``edit`` runs again on what is there now.

    Returns ``edit``'s result and whether the file changed.  ``edit`` may raise to refuse;
    then nothing is written.
    """
    with locked(path):
        for attempt in range(WRITE_ATTEMPTS):
            text, key = read_settled(path)
            new_text, result = edit(text)
            if new_text is None or new_text == text:
                return result, False
            try:
                atomic_write(path, new_text, (key, text))
            except FileChanged:
                if attempt == WRITE_ATTEMPTS - 1:
                    raise
                continue
            return result, True
    raise AssertionError("WRITE_ATTEMPTS must be >= 1")


def save_config_changes(
    path: Path | str, changes: list[ConfigChange], check_files: bool = True
) -> LookoutConfig:
    """Apply ``changes`` to the file at ``path`` if the result is valid; return it parsed.

    On any problem :class:`ConfigError` is raised and the file is left untouched.
    """
    path = Path(path)

    def edit(text: str) -> tuple[str, LookoutConfig]:
        new_text = apply_changes(text, changes)
        return new_text, parse_config_text(new_text, path, check_files=check_files)

    config, _ = rewrite(path, edit)
    return config


def replace_config_text(path: Path | str, text: str, check_files: bool = True) -> LookoutConfig:
    """Replace the whole file with ``text`` if it is a valid configuration.  A hand edit
    being saved is waited for (the file is replaced once it is whole, never in the middle)."""
    path = Path(path)
    if len(text.encode("utf-8")) > MAX_CONFIG_BYTES:
        raise ConfigError([ConfigProblem(
            "request", None, None, "the configuration is too large",
            f"at most {MAX_CONFIG_BYTES} bytes")])
    with locked(path):
        config = parse_config_text(text, path, check_files=check_files)
        for attempt in range(WRITE_ATTEMPTS):
            expected: tuple[StatKey, str] | None = None
            if path.exists():
                current, key = read_settled(path)
                expected = (key, current)
            try:
                atomic_write(path, text, expected)
            except FileChanged:
                if attempt == WRITE_ATTEMPTS - 1:
                    raise
                continue
            break
    return config
