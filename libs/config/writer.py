"""Atomic, comment-keeping writes of the INI file.

A change is applied to the file's text with ConfigUpdater (which keeps comments, order and
blank lines), the result is validated with the same models as at start-up, and only a valid
result replaces the file: temporary file in the same folder, fsync, rename, fsync of the
folder.  Writers are serialised with an advisory lock, so concurrent writes never interleave.
A value that could smuggle a new key or section (a newline, a control character) is refused.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from configupdater import ConfigUpdater

from libs.config.errors import ConfigError, ConfigProblem
from libs.config.loader import parse_config_text
from libs.config.models import LookoutConfig

KEY_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
SECTION_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,79}$")
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class ConfigChange:
    """Set keys of one section (creating it if needed), or remove the section.

    With ``replace=True`` keys of the section that are not in ``values`` are removed.
    """

    section: str
    values: dict[str, str] = field(default_factory=dict)
    remove: bool = False
    replace: bool = False


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
        if not updater.has_section(change.section):
            updater.add_section(change.section)
        sect = updater[change.section]
        if change.replace:
            for key in list(sect.keys()):
                if key not in change.values:
                    del sect[key]
        for key, value in change.values.items():
            sect[key] = value
    return str(updater)


def atomic_write(path: Path, text: str) -> None:
    folder = path.resolve().parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_config_changes(
    path: Path | str, changes: list[ConfigChange], check_files: bool = True
) -> LookoutConfig:
    """Apply ``changes`` to the file at ``path`` if the result is valid; return it parsed.

    On any problem :class:`ConfigError` is raised and the file is left untouched.
    """
    path = Path(path)
    with locked(path):
        text = path.read_text(encoding="utf-8")
        new_text = apply_changes(text, changes)
        config = parse_config_text(new_text, path, check_files=check_files)
        atomic_write(path, new_text)
    return config


def replace_config_text(path: Path | str, text: str, check_files: bool = True) -> LookoutConfig:
    """Replace the whole file with ``text`` if it is a valid configuration."""
    path = Path(path)
    with locked(path):
        config = parse_config_text(text, path, check_files=check_files)
        atomic_write(path, text)
    return config
