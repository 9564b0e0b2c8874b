"""INI text -> :class:`LookoutConfig`, with every problem reported at once."""

from __future__ import annotations

import configparser
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from libs.config.compat import (
    CLASSIFIER_NOTE,
    CLASSIFIER_SHADOWED,
    CLASSIFIER_STEPS,
    MODEL_KEYS,
    REFERENCE_DEVICES_WITHOUT_BACKEND,
    empty_means_default,
    ignored_entry,
    is_reference_model,
    lookout_model_family,
    model_note,
)
from libs.config.errors import ConfigError, ConfigProblem
from libs.config.io import read_settled
from libs.config.models import (
    ApiConfig,
    AppConfig,
    AreaConfig,
    ClassifierConfig,
    CoreConfig,
    DetectorConfig,
    LookoutConfig,
    PluginConfig,
    SourceConfig,
    TrackerConfig,
)
from libs.config.secrets import mask_text
from libs.config.video_source import VideoPathError, check_video_path, is_redis_url

FIXED_SECTIONS: dict[str, type[BaseModel]] = {
    "App": AppConfig,
    "API": ApiConfig,
    "CORE": CoreConfig,
    "Detector": DetectorConfig,
    "Classifier": ClassifierConfig,
    "Tracker": TrackerConfig,
}
# Numbered section kinds -> the LookoutConfig list they fill (one table: the parser, the
# error message and the API's section routes derive from it).
LIST_SECTIONS: dict[str, str] = {
    "Source": "sources",
    "Area": "areas",
    "SourcePostProcessor": "source_post_processors",
    "SourceLogger": "source_loggers",
    "AreaLogger": "area_loggers",
    "PeriodicTask": "periodic_tasks",
    "Output": "outputs",
}
NUMBERED = re.compile(
    rf"^(?P<kind>{'|'.join(LIST_SECTIONS)})_(?P<n>[A-Za-z0-9_-]+)$"
)
URL_PATTERN = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def _plugin_registries() -> dict[str, Any]:
    # Imported here: the registries' modules import the config models.
    from libs.loggers import AREA_LOGGERS, OUTPUTS, SOURCE_LOGGERS
    from libs.periodic_tasks import PERIODIC_TASKS
    from libs.post_processors import POST_PROCESSORS
    from libs.trackers import TRACKERS

    return {
        "Tracker": TRACKERS,
        "SourcePostProcessor": POST_PROCESSORS,
        "SourceLogger": SOURCE_LOGGERS,
        "AreaLogger": AREA_LOGGERS,
        "PeriodicTask": PERIODIC_TASKS,
        "Output": OUTPUTS,
    }


def _form_of(model: type[BaseModel], key: str | None) -> str | None:
    if key is None:
        return None
    for name, info in model.model_fields.items():
        if (info.alias or name) == key:
            extra = info.json_schema_extra
            if isinstance(extra, dict) and "form" in extra:
                return str(extra["form"])
            return None
    return None


# Keys an integration's section once had that are now one [App] key (libs/identity.py).
MOVED_TO_APP = frozenset({"ProcessorName", "Processor"})


def _known_keys(model: type[BaseModel]) -> str:
    return ", ".join(info.alias or name for name, info in model.model_fields.items())


def _validate(
    model: type[BaseModel],
    values: dict[str, str],
    file: str,
    section: str,
    problems: list[ConfigProblem],
) -> Any:
    # ``DeviceId =``: an empty value of a key that is not text means "not set".
    values = {k: v for k, v in values.items() if not empty_means_default(model, k, v)}
    try:
        obj = model.model_validate(values)
    except ValidationError as exc:
        seen: set[str | None] = set()
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else None
            if key in seen:  # a union type reports one error per branch: keep the first
                continue
            seen.add(key)
            if err["type"] == "missing" and len(err["loc"]) > 1:
                problems.append(
                    ConfigProblem(file, section, key, "incomplete value", _form_of(model, key))
                )
            elif err["type"] == "extra_forbidden" and key in MOVED_TO_APP:
                problems.append(
                    ConfigProblem(
                        file, section, key,
                        "no longer a key of this section: set ProcessorName in [App] instead "
                        "(one name for this processor in every integration)",
                    )
                )
            elif err["type"] == "extra_forbidden":
                problems.append(
                    ConfigProblem(
                        file, section, key, "unknown key", f"one of: {_known_keys(model)}"
                    )
                )
            elif err["type"] == "missing":
                problems.append(
                    ConfigProblem(file, section, key, "missing required key", _form_of(model, key))
                )
            else:
                msg = str(err["msg"]).removeprefix("Value error, ")
                if key is not None and "input" in err and isinstance(err["input"], str):
                    shown = mask_text(repr(err["input"][:200]))  # errors reach logs, too
                    msg = f"{msg}, got {shown}"
                problems.append(ConfigProblem(file, section, key, msg, _form_of(model, key)))
        return None
    if hasattr(obj, "_section"):
        obj._section = section
    return obj


def _read_ini(text: str, file: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case
    try:
        parser.read_string(text, source=file)
    except configparser.DuplicateSectionError as exc:
        raise ConfigError(
            [ConfigProblem(file, exc.section, None, f"section appears twice (line {exc.lineno})")]
        ) from exc
    except configparser.DuplicateOptionError as exc:
        raise ConfigError(
            [
                ConfigProblem(
                    file, exc.section, exc.option, f"key appears twice (line {exc.lineno})"
                )
            ]
        ) from exc
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError(
            [ConfigProblem(file, None, None, f"line {exc.lineno} is outside any [Section]")]
        ) from exc
    except configparser.ParsingError as exc:
        lines = ", ".join(str(lineno) for lineno, _ in exc.errors)
        raise ConfigError(
            [ConfigProblem(file, None, None, f"lines {lines} are not 'Key = value'")]
        ) from exc
    return parser


def is_stream_url(video_path: str) -> bool:
    return bool(URL_PATTERN.match(video_path))


def is_device(video_path: str) -> bool:
    return video_path.isdigit() or video_path.startswith("/dev/video")


def parse_config_text(
    text: str, path: Path | str, check_files: bool = True
) -> LookoutConfig:
    """Parse and validate INI ``text`` as if read from ``path``."""
    path = Path(path)
    file = str(path)
    parser = _read_ini(text, file)
    problems: list[ConfigProblem] = []
    registries = _plugin_registries()

    fixed: dict[str, Any] = {}
    canonical = {k.lower(): k for k in FIXED_SECTIONS}
    lists: dict[str, list[Any]] = {kind: [] for kind in LIST_SECTIONS}

    warnings: list[ConfigProblem] = []
    for section in parser.sections():
        values = dict(parser.items(section))
        fixed_name = canonical.get(section.lower())
        if fixed_name is not None:
            model: type[BaseModel] | None = FIXED_SECTIONS[fixed_name]
            if fixed_name == "Tracker":
                model = _plugin_model(registries["Tracker"], values, file, section, problems)
            elif fixed_name == "Detector":
                _reference_detector(values, file, section, problems, warnings)
            if model is not None:
                _reference_ignored(model, values, file, section, warnings)
                fixed[fixed_name] = _validate(model, values, file, section, problems)
            continue
        m = NUMBERED.match(section)
        if not m:
            problems.append(
                ConfigProblem(
                    file,
                    section,
                    None,
                    "unknown section",
                    ", ".join(FIXED_SECTIONS) + ", or "
                    + ", ".join(f"{kind}_N" for kind in LIST_SECTIONS),
                )
            )
            continue
        kind = m["kind"]
        model = None
        if kind == "Source":
            model = SourceConfig
        elif kind == "Area":
            model = AreaConfig
        else:
            model = _plugin_model(registries[kind], values, file, section, problems)
            if model is None:
                continue
        obj = _validate(model, values, file, section, problems)
        if obj is not None:
            lists[kind].append(obj)

    for name in ("App", "API", "CORE", "Detector"):
        if name not in fixed:
            if any(s.lower() == name.lower() for s in parser.sections()):
                continue  # present but invalid: already reported
            fixed[name] = FIXED_SECTIONS[name]()
    if "Tracker" not in fixed:
        fixed["Tracker"] = _default_tracker(registries["Tracker"])

    if problems:
        raise ConfigError(problems)

    config = LookoutConfig(
        path=path,
        app=fixed["App"],
        api=fixed["API"],
        core=fixed["CORE"],
        detector=fixed["Detector"],
        classifier=fixed.get("Classifier"),
        tracker=fixed["Tracker"],
        **{field: lists[kind] for kind, field in LIST_SECTIONS.items()},
    )
    config._warnings = warnings
    _classifier_steps(config, file, warnings)
    problems.extend(_cross_check(config, file, check_files))
    if problems:
        raise ConfigError(problems)
    return config


def _reference_ignored(
    model: type[BaseModel], values: dict[str, str], file: str, section: str,
    warnings: list[ConfigProblem],
) -> None:
    """Warn about the reference's keys (and sections) this section accepts without acting on
    them (libs/config/compat.py); drop those the model has no field for."""
    whole = ignored_entry(section, None)
    if whole is not None:
        warnings.append(ConfigProblem(file, section, None, f"ignored: {whole.why}"))
    fields = {info.alias or name for name, info in model.model_fields.items()}
    for key in list(values):
        entry = ignored_entry(section, key)
        if entry is None:
            continue
        warnings.append(ConfigProblem(file, section, key, f"ignored: {entry.why}"))
        if key not in fields:
            del values[key]


def canonical_device(name: str) -> str | None:
    """The registered backend ``name`` means, matched without regard to case
    (``Jetson`` -> ``jetson``); None if no backend has that name."""
    from libs.detectors import DETECTORS

    by_lower = {n.lower(): n for n in DETECTORS.names()}
    return by_lower.get(name.strip().lower())


def device_problem(name: str) -> str | None:
    """Why ``[Detector] Device = name`` names no backend of this install, else None."""
    from libs.detectors import DETECTORS
    from libs.registry import UnknownPluginError

    if canonical_device(name) is not None:
        return None
    gone = REFERENCE_DEVICES_WITHOUT_BACKEND.get(name.strip().lower())
    if gone is not None:
        return f"no backend {name!r}: {gone}"
    try:
        DETECTORS.get(name)
    except UnknownPluginError as exc:
        return str(exc)
    return None


def _reference_detector(
    values: dict[str, str], file: str, section: str, problems: list[ConfigProblem],
    warnings: list[ConfigProblem],
) -> None:
    """Device names in any case; the reference's model names run Lookout's family."""
    device = values.get("Device")
    if device is not None and device.strip():
        found = canonical_device(device)
        if found is None:
            problems.append(ConfigProblem(file, section, "Device", str(device_problem(device))))
        else:
            values["Device"] = found
    name = values.get("Name", "")
    if is_reference_model(name):
        dropped = {key: values.pop(key) for key in MODEL_KEYS if key in values}
        warnings.append(ConfigProblem(file, section, "Name", model_note(name, dropped)))
        values["Name"] = lookout_model_family()


def _classifier_steps(config: LookoutConfig, file: str, warnings: list[ConfigProblem]) -> None:
    """[Classifier] turns on the face-mask steps (before the anonymizer, which blurs faces)
    unless the file configures them itself."""
    if config.classifier is None:
        return
    steps = config.source_post_processors
    names = {step.name for step in steps}
    if "facemask" in names:
        warnings.append(ConfigProblem(file, "Classifier", None, CLASSIFIER_SHADOWED))
        return
    warnings.append(ConfigProblem(file, "Classifier", None, CLASSIFIER_NOTE))
    from libs.post_processors import POST_PROCESSORS

    at = next((i for i, step in enumerate(steps) if step.name == "anonymizer"), len(steps))
    for name in CLASSIFIER_STEPS:
        if name in names:
            continue
        cls = POST_PROCESSORS.get(name)
        model: type[PluginConfig] = getattr(cls, "Config", PluginConfig)
        step = model.model_validate({"Name": name})
        step._section = "Classifier"
        steps.insert(at, step)
        at += 1


def _default_tracker(registry: Any) -> TrackerConfig:
    cls = registry.get("IOUTracker")
    cfg: TrackerConfig = cls.Config(Name="IOUTracker")
    cfg._section = "Tracker"
    return cfg


def _plugin_model(
    registry: Any, values: dict[str, str], file: str, section: str, problems: list[ConfigProblem]
) -> type[BaseModel] | None:
    name = values.get("Name", "").strip()
    if not name:
        problems.append(
            ConfigProblem(
                file, section, "Name", "missing required key",
                f"one of: {', '.join(registry.names())}",
            )
        )
        return None
    try:
        cls = registry.get(name)
    except KeyError as exc:
        problems.append(ConfigProblem(file, section, "Name", str(exc)))
        return None
    model: type[BaseModel] = getattr(cls, "Config", PluginConfig)
    return model


def _cross_check(config: LookoutConfig, file: str, check_files: bool) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []

    def dup_ids(items: list[Any], what: str) -> set[str]:
        seen: dict[str, str] = {}
        for item in items:
            if item.id in seen:
                problems.append(
                    ConfigProblem(
                        file,
                        item.section,
                        "Id",
                        f"duplicate {what} id {item.id!r}, also used by [{seen[item.id]}]",
                        "an id used by no other section",
                    )
                )
            else:
                seen[item.id] = item.section
        return set(seen)

    camera_ids = dup_ids(config.sources, "camera")
    dup_ids(config.areas, "area")
    for area in config.areas:
        for cam in area.cameras:
            if cam not in camera_ids:
                problems.append(
                    ConfigProblem(
                        file,
                        area.section,
                        "Cameras",
                        f"camera {cam!r} is not the Id of any [Source_N]",
                        f"ids from: {', '.join(sorted(camera_ids)) or 'none defined'}",
                    )
                )
    for src in config.sources:
        try:
            check_video_path(src.video_path, config.assets_dir, config.data_dir, check_files)
        except VideoPathError as exc:
            problems.append(
                ConfigProblem(file, src.section, "VideoPath", exc.message, exc.expected)
            )
    problems += [ConfigProblem(file, section, key, message)
                 for section, key, message in config.recordings_mode_problems()]
    if check_files:
        from libs.detectors import resolve_model_path

        # Cameras reading Redis detection messages need no model: a file of only those
        # does not require one.
        imaged = [s for s in config.sources if not is_redis_url(s.video_path)]
        checks: list[tuple[str, str, str, SourceConfig | None]] = [
            ("Detector", "Name", "ModelPath", None)] if imaged or not config.sources else []
        checks += [(s.section, "DetectorName", "DetectorModelPath", s)
                   for s in imaged if s.detector_overrides()]
        for section, name_key, path_key, source in checks:
            try:
                model = resolve_model_path(config, source)
            except ValueError as exc:
                problems.append(ConfigProblem(file, section, name_key, str(exc)))
                continue
            if not model.exists():
                problems.append(
                    ConfigProblem(
                        file,
                        section,
                        path_key,
                        f"no such model file: {model}",
                        "an existing model file (relative paths are inside AssetsDirectory "
                        f"{config.assets_dir}); download_models.sh fetches the defaults",
                    )
                )
    for plugin in [
        config.tracker,
        *config.source_post_processors,
        *config.source_loggers,
        *config.area_loggers,
        *config.periodic_tasks,
        *config.outputs,
    ]:
        check: Callable[..., list[tuple[str | None, str | None, str]]] | None = getattr(
            plugin, "cross_check", None
        )
        if check is not None:
            for where, key, message in check(config):
                problems.append(ConfigProblem(file, where or plugin.section, key, message))
    return problems


def load_config(path: Path | str, check_files: bool = True) -> LookoutConfig:
    """Read and validate the INI file at ``path``."""
    path = Path(path)
    text, _ = read_settled(path)
    return parse_config_text(text, path, check_files=check_files)
