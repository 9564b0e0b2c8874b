"""``lookout migrate-config OLD.ini NEW.ini``: a Smart Social Distancing file, made Lookout's.

The rewrite is line by line, so every comment, blank line and key order of the old file stays;
nothing is deleted: a key or section Lookout does not act on is commented out, with a
``; migrate-config:`` line above it saying why.  Each change is also returned as a
:class:`Change` (the command prints them).  What to change comes from the table of
:mod:`libs.config.compat`, the same one the loader warns from.
"""

from __future__ import annotations

import configparser
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from libs.config.compat import (
    CLASSIFIER_STEPS,
    MODEL_KEYS,
    OUTPUT_DIRECTORY_KEYS,
    REFERENCE_DATA_ROOT,
    REFERENCE_DEVICES_WITHOUT_BACKEND,
    empty_means_default,
    ignored_entry,
    is_reference_model,
    lookout_model_family,
    runtime_device,
)
from libs.config.errors import ConfigError
from libs.config.io import MAX_CONFIG_BYTES

SECTION_LINE = re.compile(r"^\s*\[(?P<name>[^\]]+)\]\s*$")
KEY_LINE = re.compile(r"^(?P<key>[^=;#\s][^=]*?)\s*=(?P<value>.*)$")
NOTE = "; migrate-config: "


class MigrateError(ValueError):
    """The old file cannot be migrated (one line, for the command to print)."""


@dataclass(frozen=True)
class Change:
    line: int
    """1-based line of the old file."""
    where: str
    """``[Section] Key`` or ``[Section]``."""
    what: str
    why: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.where}: {self.what} ({self.why})"


@dataclass
class _Line:
    text: str
    section: str | None
    key: str | None = None
    value: str = ""


def _parse(text: str, source: str) -> tuple[list[_Line], configparser.ConfigParser]:
    parser = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text, source=source)
    except configparser.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise MigrateError(f"{source} is not an INI file this command can read: {first}") from exc
    lines: list[_Line] = []
    section: str | None = None
    for raw in text.splitlines():
        m = SECTION_LINE.match(raw)
        if m:
            section = m["name"].strip()
            lines.append(_Line(raw, section))
            continue
        k = KEY_LINE.match(raw)
        if k and section is not None and not raw.startswith((" ", "\t")):
            lines.append(_Line(raw, section, k["key"].strip(), k["value"].strip()))
        else:
            lines.append(_Line(raw, section))
    return lines, parser


def _section_model(section: str, parser: configparser.ConfigParser) -> type[BaseModel] | None:
    from libs.config.loader import FIXED_SECTIONS, NUMBERED, _plugin_registries
    from libs.config.models import AreaConfig, SourceConfig

    fixed = {name.lower(): model for name, model in FIXED_SECTIONS.items()}
    if section.lower() in fixed and section.lower() != "tracker":
        return fixed[section.lower()]
    kind = "Tracker" if section.lower() == "tracker" else None
    m = NUMBERED.match(section)
    if m:
        kind = m["kind"]
        if kind == "Source":
            return SourceConfig
        if kind == "Area":
            return AreaConfig
    if kind is None:
        return None
    try:
        cls = _plugin_registries()[kind].get(parser.get(section, "Name", fallback="").strip())
    except KeyError:
        return None
    model: type[BaseModel] | None = getattr(cls, "Config", None)
    return model


def migrate_text(text: str, source: str = "OLD.ini") -> tuple[str, list[Change]]:
    """The Lookout version of the reference file ``text`` and the changes made."""
    from libs.config.loader import canonical_device

    lines, parser = _parse(text, source)
    changes: list[Change] = []
    out: list[str] = []
    models = {s: _section_model(s, parser) for s in parser.sections()}
    has_facemask = any(parser.get(s, "Name", fallback="").strip() == "facemask"
                       for s in parser.sections())
    dropped_sections: set[str] = set()
    model_replaced: set[str] = set()
    moves: dict[str, list[str]] = {}  # target section -> lines to add at its end

    def comment_out(line: _Line, no: int, why: str, what: str = "commented out") -> None:
        out.append(f"{NOTE}{why}")
        out.append(f"; {line.text}")
        where = f"[{line.section}]" + (f" {line.key}" if line.key else "")
        changes.append(Change(no, where, what, why))

    for no, line in enumerate(lines, start=1):
        section = line.section
        if section is not None and line.key is None and SECTION_LINE.match(line.text):
            whole = ignored_entry(section, None)
            if whole is not None:
                dropped_sections.add(section)
                comment_out(line, no, f"ignored by Lookout: {whole.why}",
                            "section commented out")
                continue
            if section.lower() == "classifier":
                dropped_sections.add(section)
                why = ("the reference's face-mask classifier; in Lookout the steps "
                       + " + ".join(CLASSIFIER_STEPS) + " do it"
                       + (" (this file's facemask section)" if has_facemask
                          else " (added before the anonymizer)"))
                comment_out(line, no, why, "section commented out")
                continue
            if _is_anonymizer(section, parser) and not has_facemask and _has_classifier(parser):
                out.extend(_classifier_sections(parser, changes, no))
            out.append(line.text)
            continue
        if section in dropped_sections:
            out.append(line.text if line.key is None else f"; {line.text}")
            continue
        if line.key is None or section is None:
            out.append(line.text)
            continue
        key, value = line.key, line.value
        entry = ignored_entry(section, key)
        if entry is not None:
            why = f"ignored by Lookout: {entry.why}"
            if entry.moved_to is not None:
                target, target_key = entry.moved_to
                if not parser.has_option(target, target_key) and parser.has_section(target):
                    moves.setdefault(target, []).append(f"{target_key} = {value}")
                    why += f"; its value is now [{target}] {target_key}"
            comment_out(line, no, why)
            continue
        model = models.get(section)
        if section.lower() == "detector" and key == "Device" and value:
            found = canonical_device(value)
            if found is None and value.lower() in REFERENCE_DEVICES_WITHOUT_BACKEND:
                found = "x86"
                reason = REFERENCE_DEVICES_WITHOUT_BACKEND[value.lower()]
            else:
                reason = "Lookout's name of the same backend"
            model_name = parser.get(section, "Name", fallback="").strip()
            runtime = runtime_device(model_name, found or value)
            if runtime is not None:
                found = runtime
                reason = (f"the reference ran {model_name} on {value} with this runtime; "
                          f"Lookout's {runtime} device runs {lookout_model_family()} on it")
            if found is None:
                changes.append(Change(no, f"[{section}] Device", f"{value!r} kept: needs "
                                      "attention", "no Lookout backend has this name"))
            elif found != value:
                out.append(f"{key} = {found}")
                changes.append(Change(no, f"[{section}] Device", f"{value} -> {found}", reason))
                continue
        if section.lower() == "detector" and key == "Name" and is_reference_model(value):
            family = lookout_model_family()
            out.append(f"{key} = {family}")
            model_replaced.add(section)
            changes.append(Change(no, f"[{section}] Name", f"{value} -> {family}",
                                  f"{value} is a Smart Social Distancing model; Lookout runs "
                                  f"its own {family} model"))
            continue
        if (section.lower() == "detector" and key in MODEL_KEYS
                and is_reference_model(parser.get(section, "Name", fallback=""))):
            comment_out(line, no, f"described the reference model "
                        f"{parser.get(section, 'Name').strip()}; "
                        f"{lookout_model_family()}'s default applies")
            continue
        if model is not None and empty_means_default(model, key, value) \
                and not _default_is_none(model, key):
            comment_out(line, no, "empty: Lookout's default applies")
            continue
        if key in OUTPUT_DIRECTORY_KEYS and value.startswith(REFERENCE_DATA_ROOT):
            new = value[len(REFERENCE_DATA_ROOT):]
            out.append(f"{key} = {new}")
            changes.append(Change(no, f"[{section}] {key}", f"{value} -> {new}",
                                  f"{REFERENCE_DATA_ROOT} was the reference container's data "
                                  "folder; Lookout writes inside DataDirectory"))
            continue
        if key == "VideoPath" and value.startswith(REFERENCE_DATA_ROOT):
            changes.append(Change(no, f"[{section}] {key}", f"{value} kept: needs attention",
                                  f"{REFERENCE_DATA_ROOT} was the reference container's data "
                                  "folder; point VideoPath at a file inside AssetsDirectory or "
                                  "DataDirectory, or at a stream URL"))
        out.append(line.text)

    if moves:
        out = _append_to_sections(out, moves)
    if _has_classifier(parser) and not has_facemask and not any(
            _is_anonymizer(s, parser) for s in parser.sections()):
        out.append("")
        out.extend(_classifier_sections(parser, changes, len(lines)))
    return "\n".join(out) + "\n", changes


def _default_is_none(model: type[BaseModel], key: str) -> bool:
    """An empty value already means None for such keys: nothing to change."""
    return any((info.alias or name) == key and info.default is None
               for name, info in model.model_fields.items())


def _has_classifier(parser: configparser.ConfigParser) -> bool:
    return any(s.lower() == "classifier" for s in parser.sections())


def _is_anonymizer(section: str, parser: configparser.ConfigParser) -> bool:
    return (section.startswith("SourcePostProcessor_")
            and parser.get(section, "Name", fallback="").strip() == "anonymizer")


def _classifier_sections(
    parser: configparser.ConfigParser, changes: list[Change], no: int
) -> list[str]:
    """The face-mask steps as new [SourcePostProcessor_N] sections, numbered after the
    file's highest N."""
    numbers = [int(s.rsplit("_", 1)[1]) for s in parser.sections()
               if s.startswith("SourcePostProcessor_") and s.rsplit("_", 1)[1].isdigit()]
    n = max(numbers, default=-1) + 1
    block: list[str] = []
    for name in CLASSIFIER_STEPS:
        section = f"SourcePostProcessor_{n}"
        n += 1
        block += [f"{NOTE}added for [Classifier]: face masks in Lookout",
                  f"[{section}]", f"Name = {name}", "Enabled = True", ""]
        changes.append(Change(no, f"[{section}]", f"added Name = {name}",
                              "[Classifier] asked for face masks; this step gives them"))
    return block


def _append_to_sections(lines: list[str], moves: dict[str, list[str]]) -> list[str]:
    """``lines`` with ``moves[section]`` added after the last key line of each section."""
    out: list[str] = []
    section: str | None = None
    last_key = -1
    pending: dict[str, int] = {}
    for text in lines:
        m = SECTION_LINE.match(text)
        if m:
            if section in moves:
                pending[section] = last_key
            section = m["name"].strip()
        if KEY_LINE.match(text) and not text.lstrip().startswith((";", "#")):
            last_key = len(out)
        out.append(text)
    if section in moves:
        pending[section] = last_key
    for sec, at in sorted(pending.items(), key=lambda kv: -kv[1]):
        out[at + 1:at + 1] = moves[sec]
    return out


def migrate_file(old: Path, new: Path, force: bool = False) -> list[Change]:
    """Write the migrated ``old`` to ``new`` (atomically); MigrateError says why not."""
    if not old.is_file():
        raise MigrateError(f"{old}: no such file")
    if new.exists() and new.resolve() == old.resolve():
        raise MigrateError(f"{new} is the old file itself: write the new one beside it")
    if new.exists() and not force:
        raise MigrateError(f"{new} exists; use --force to replace it")
    if old.stat().st_size > MAX_CONFIG_BYTES:
        raise MigrateError(f"{old} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = old.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MigrateError(f"{old} is not UTF-8 text") from exc
    result, changes = migrate_text(text, str(old))
    folder = new.resolve().parent
    if not folder.is_dir():
        raise MigrateError(f"{folder}: no such folder")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{new.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(result)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, new)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return changes


def remaining_problems(new: Path) -> list[str]:
    """What still keeps the written file from loading (files not checked)."""
    from libs.config.loader import parse_config_text

    try:
        parse_config_text(new.read_text(encoding="utf-8"), new, check_files=False)
    except ConfigError as exc:
        return [str(p) for p in exc.problems]
    return []
