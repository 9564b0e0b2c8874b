"""Typed configuration: every class of bad input stops start-up with one clear message that
names file, section, key and expected form, and never changes the file on disk."""

from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path

import pytest

from libs.config import ConfigChange, ConfigError, load_config, save_config_changes
from libs.config.occupancy_rules import occupancy_limit, parse_occupancy_rules
from libs.config.writer import replace_config_text


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in config"
    path.write_text(text.replace(old, new, 1))


def test_bundled_config_is_valid(shipped_config: Path) -> None:
    cfg = load_config(shipped_config)
    assert [s.id for s in cfg.sources] == ["pets-view1"]
    assert cfg.sources[0].frame_rate == 7
    start = cfg.sources[0].start_time
    assert start is not None and start.utcoffset() is not None
    assert len(cfg.sources[0].calibration_image_points) == 4
    assert cfg.areas[0].cameras == ["pets-view1"]
    assert cfg.tracker.name == "KalmanTracker"
    assert [p.name for p in cfg.source_post_processors] == [
        "objects_filtering", "social_distance", "occupancy", "line_crossing", "zones", "dwell",
        "faces", "facemask", "head_pose", "demographics", "engagement", "audience", "heatmap",
        "anonymizer"]
    enabled = {p.name for p in cfg.source_post_processors if p.enabled}
    assert "anonymizer" in enabled and "demographics" not in enabled
    assert cfg.sources[0].section == "Source_0"


ROI = "ROI = 0,150; 768,150; 768,576; 0,576"

# (old text, new text, section, key, words in the message, words in the expected form)
BAD = [
    pytest.param("MinScore = 0.1", "MinScore = 1.7", "Detector", "MinScore",
                 "less than or equal to 1", "a number from 0 to 1", id="out-of-range"),
    pytest.param("MaxProcesses = 1", "MaxProcesses = two", "App", "MaxProcesses",
                 "valid integer", "an integer from 1 to 64", id="not-a-number"),
    pytest.param("TimeZone = UTC", "TimeZone = Mars/Olympus", "App", "TimeZone",
                 "unknown time zone", "IANA", id="time-zone"),
    pytest.param("FrameRate = 7", "FrameRate = 7\nFramerate = 8", "Source_0", "Framerate",
                 "unknown key", "FrameRate", id="unknown-key"),
    pytest.param("DistMethod = CalibratedDistance", "DistMethod = Euclid", "Source_0",
                 "DistMethod", "Input should be", "CalibratedDistance", id="bad-enum"),
    pytest.param("StartTime = 2009-03-01T10:00:00+00:00", "StartTime = yesterday", "Source_0",
                 "StartTime", "ISO 8601", "ISO 8601", id="bad-datetime"),
    pytest.param(ROI, "ROI = 1,2; 3,4", "Source_0", "ROI", "at least 3 points",
                 "at least 3 points", id="short-roi"),
    pytest.param(ROI, "ROI = 1,2,3; 3,4; 5,6", "Source_0", "ROI", "is not 'x,y'",
                 "at least 3 points", id="bad-point"),
    pytest.param("CalibrationFloorPoints = -7.207,3.425; 1.894,-9.392; -13.597,-14.155; "
                 "-17.316,-7.817", "CalibrationFloorPoints = 0,0; 1,0; 1,1", "Source_0", None,
                 "has 4 points but CalibrationFloorPoints has 3", None, id="calibration-count"),
    pytest.param("Cameras = pets-view1", "Cameras = pets-view1,lobby", "Area_0", "Cameras",
                 "'lobby' is not the Id of any", "pets-view1", id="area-unknown-camera"),
    pytest.param("OccupancyRules = Mon-Fri 08:00-18:00 8; Sat,Sun 10:00-16:00 6",
                 "OccupancyRules = Mon-Fri 08:00-18:00 8; Fri 17:00-20:00 6", "Area_0",
                 "OccupancyRules", "overlap on Fri", "Mon-Fri 09:00-18:00 50", id="rules-overlap"),
    pytest.param("OccupancyRules = Mon-Fri 08:00-18:00 8; Sat,Sun 10:00-16:00 6",
                 "OccupancyRules = Mon-Fri 8-18 8", "Area_0", "OccupancyRules",
                 "is not 'days HH:MM-HH:MM limit'", "Mon-Fri", id="rules-form"),
    pytest.param("DailyReportTime = 06:00\n\n[SourcePostProcessor_0]",
                 "DailyReportTime = 6pm\n\n[SourcePostProcessor_0]", "Area_0", "DailyReportTime",
                 "is not a time HH:MM", "HH:MM", id="hhmm"),
    pytest.param("Id = pets-view1", "Id = pets view 1", "Source_0", "Id", "ids are 1-64",
                 "letters, digits", id="bad-id"),
    pytest.param("Name = KalmanTracker", "Name = DeepMagic", "Tracker",
                 "Name", "unknown tracker 'DeepMagic'", None, id="unknown-tracker"),
    pytest.param("Name = occupancy", "Name = occupancy\nLimit = 3", "SourcePostProcessor_2",
                 "Limit", "unknown key", "Name, Enabled", id="unknown-plugin-key"),
    pytest.param("[PeriodicTask_0]", "[Reports]\nX = 1\n\n[PeriodicTask_0]", "Reports", None,
                 "unknown section", "Source_N", id="unknown-section"),
    pytest.param("SSLEnabled = False", "SSLEnabled = True", "API", None,
                 "SSLEnabled needs SSLCertificateFile and SSLKeyFile", None, id="ssl-files"),
]


@pytest.mark.parametrize("old,new,section,key,message,expected", BAD)
def test_bad_value_names_file_section_key_and_form(
    x86_config: Path, old: str, new: str, section: str, key: str | None, message: str,
    expected: str | None,
) -> None:
    edit(x86_config, old, new)
    before = digest(x86_config)
    with pytest.raises(ConfigError) as info:
        load_config(x86_config)
    text = str(info.value)
    assert len(info.value.problems) == 1, text
    problem = info.value.problems[0]
    assert problem.file == str(x86_config)
    assert problem.section == section, text
    assert problem.key == key, text
    assert message in problem.message, text
    if expected:
        assert problem.expected and expected in problem.expected, text
    # The one-line message carries all of it.
    assert str(x86_config) in text and f"[{section}]" in text
    assert digest(x86_config) == before


def test_duplicate_camera_id(x86_config: Path) -> None:
    text = x86_config.read_text()
    block = text[text.index("[Source_0]"):text.index("[Area_0]")]
    x86_config.write_text(text + "\n" + block.replace("[Source_0]", "[Source_7]"))
    before = digest(x86_config)
    with pytest.raises(ConfigError) as info:
        load_config(x86_config)
    (problem,) = info.value.problems
    assert (problem.section, problem.key) == ("Source_7", "Id")
    assert "duplicate camera id 'pets-view1', also used by [Source_0]" in problem.message
    assert digest(x86_config) == before


def test_duplicate_section_and_key(x86_config: Path) -> None:
    edit(x86_config, "[Area_0]", "[Source_0]\nId = x\nVideoPath = y\n\n[Area_0]")
    with pytest.raises(ConfigError, match=r"\[Source_0\]: section appears twice"):
        load_config(x86_config)


def test_duplicate_key(x86_config: Path) -> None:
    edit(x86_config, "MaxLost = 60", "MaxLost = 60\nMaxLost = 6")
    with pytest.raises(ConfigError) as info:
        load_config(x86_config)
    (problem,) = info.value.problems
    assert (problem.section, problem.key) == ("Tracker", "MaxLost")
    assert "appears twice" in problem.message


@pytest.mark.parametrize(
    "old,new,key,message",
    [
        ("VideoPath = data/pets09_s2l1/vtest.avi", "VideoPath = data/missing.avi", "VideoPath",
         "no such file or folder"),
        ("ModelPath = models/person_yolox_nano_416.onnx", "ModelPath = models/none.onnx",
         "ModelPath", "no such model file"),
    ],
)
def test_missing_files(x86_config: Path, old: str, new: str, key: str, message: str) -> None:
    edit(x86_config, old, new)
    with pytest.raises(ConfigError) as info:
        load_config(x86_config)
    (problem,) = info.value.problems
    assert problem.key == key and message in problem.message
    assert problem.expected and "AssetsDirectory" in problem.expected


def test_missing_required_key(x86_config: Path) -> None:
    edit(x86_config, "VideoPath = data/pets09_s2l1/vtest.avi\n", "")
    with pytest.raises(ConfigError) as info:
        load_config(x86_config)
    (problem,) = info.value.problems
    assert (problem.section, problem.key, problem.message) == (
        "Source_0", "VideoPath", "missing required key")


def test_every_problem_reported_at_once(x86_config: Path) -> None:
    edit(x86_config, "MinScore = 0.1", "MinScore = 2")
    edit(x86_config, "MaxLost = 60", "MaxLost = -1")
    with pytest.raises(ConfigError) as info:
        load_config(x86_config)
    keys = {(p.section, p.key) for p in info.value.problems}
    assert keys == {("Detector", "MinScore"), ("Tracker", "MaxLost")}


def test_missing_file_and_garbage(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "none.ini")
    bad = tmp_path / "bad.ini"
    bad.write_text("Id = 3\n[App]\n")
    with pytest.raises(ConfigError, match="outside any"):
        load_config(bad)


def test_save_keeps_comments_and_is_validated(x86_config: Path) -> None:
    original = x86_config.read_text()
    save_config_changes(x86_config, [ConfigChange("Tracker", {"MaxLost": "9"})])
    text = x86_config.read_text()
    assert "MaxLost = 9" in text
    comments = [line for line in original.splitlines() if line.startswith("#")]
    assert comments and all(c in text for c in comments)
    assert load_config(x86_config).tracker.max_lost == 9

    before = digest(x86_config)
    with pytest.raises(ConfigError, match="MaxLost"):
        save_config_changes(x86_config, [ConfigChange("Tracker", {"MaxLost": "many"})])
    assert digest(x86_config) == before
    assert not list(x86_config.parent.glob(".config.ini.*.tmp"))


@pytest.mark.parametrize(
    "values",
    [
        {"Name": "lobby\n[Source_9]\nId = evil"},
        {"Name": "lobby\r\nVideoPath = /etc/passwd"},
        {"Bad Key": "1"},
        {"Name": "x\x00y"},
    ],
)
def test_ini_injection_refused(x86_config: Path, values: dict[str, str]) -> None:
    before = digest(x86_config)
    with pytest.raises(ConfigError):
        save_config_changes(x86_config, [ConfigChange("Source_0", values)])
    assert digest(x86_config) == before


def test_add_and_remove_sections(x86_config: Path, shared: Path) -> None:
    save_config_changes(
        x86_config,
        [ConfigChange("Source_1", {"Id": "tud", "VideoPath": "data/tud_campus/tud_campus.mp4"})],
    )
    assert [s.id for s in load_config(x86_config).sources] == ["pets-view1", "tud"]
    save_config_changes(x86_config, [ConfigChange("Source_1", remove=True)])
    assert [s.id for s in load_config(x86_config).sources] == ["pets-view1"]


def test_concurrent_writes_leave_one_valid_write(x86_config: Path) -> None:
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            save_config_changes(x86_config, [ConfigChange("Tracker", {"MaxLost": str(i)})],
                                check_files=False)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    text = x86_config.read_text()
    assert len(re.findall(r"^MaxLost = \d+$", text, re.M)) == 1
    assert 0 <= load_config(x86_config).tracker.max_lost < 20


def test_replace_whole_file_validates(x86_config: Path) -> None:
    before = digest(x86_config)
    with pytest.raises(ConfigError):
        replace_config_text(x86_config, "[Detector]\nMinScore = 3\n")
    assert digest(x86_config) == before


def test_env_overrides_directories(x86_config: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LOOKOUT_DATA_DIR", str(tmp_path / "out"))
    cfg = load_config(x86_config)
    assert cfg.data_dir == (tmp_path / "out").resolve()


def test_occupancy_rules() -> None:
    from datetime import datetime

    rules = parse_occupancy_rules("Mon-Fri 09:00-18:00 50; Sat 10:00-14:00 20")
    assert len(rules) == 6
    assert occupancy_limit(rules, 5, datetime(2026, 11, 20, 9, 0)) == 50  # a Friday
    assert occupancy_limit(rules, 5, datetime(2026, 11, 20, 18, 0)) == 5
    assert occupancy_limit(rules, 5, datetime(2026, 11, 21, 13, 59)) == 20  # Saturday
    assert occupancy_limit(rules, 5, datetime(2026, 11, 22, 12, 0)) == 5  # Sunday
    for bad in ["Mon 10:00-09:00 3", "Funday 10:00-11:00 3", "Mon 10:00-11:00",
                "Mon 25:00-26:00 1", "Fri-Mon 10:00-11:00 2"]:
        with pytest.raises(ValueError):
            parse_occupancy_rules(bad)


def test_processor_name_is_one_app_key(x86_config: Path) -> None:
    """[App] ProcessorName names this box in every integration; no sink section has a key
    of its own for it, and one left there from before says where it went."""
    from libs.identity import PROCESSOR_NAME_RE, host_processor_name
    from libs.loggers import AREA_LOGGERS, OUTPUTS, SOURCE_LOGGERS
    from libs.periodic_tasks import PERIODIC_TASKS

    cfg = load_config(x86_config)
    assert cfg.app.processor_name == ""
    assert cfg.app.processor_name_or_host == host_processor_name()
    assert PROCESSOR_NAME_RE.fullmatch(cfg.app.processor_name_or_host)
    assert host_processor_name("Store 12.local") == "Store-12.local"
    assert host_processor_name("_-.edge/7") == "edge-7"
    assert host_processor_name("é") == "lookout" and host_processor_name("") == "lookout"
    assert host_processor_name("b" * 80) == "b" * 63

    base = x86_config.read_text()
    x86_config.write_text(base.replace("[App]\n", "[App]\nProcessorName = store-42\n", 1))
    assert load_config(x86_config).app.processor_name_or_host == "store-42"
    for bad in ("store 42", "-lead", "a" * 64, "box/7"):
        x86_config.write_text(base.replace("[App]\n", f"[App]\nProcessorName = {bad}\n", 1))
        with pytest.raises(ConfigError, match=r"\[App\] ProcessorName: ProcessorName must be "
                                              r"1 to 63 letters"):
            load_config(x86_config)

    for name, extra, key in (("postgres_logger", "", "ProcessorName"),
                             ("mqtt_logger", "Host = 127.0.0.1\n", "ProcessorName"),
                             ("influxdb_logger", "", "Processor")):
        x86_config.write_text(base + f"\n[Output_7]\nName = {name}\n{extra}{key} = store-42\n")
        with pytest.raises(ConfigError) as err:
            load_config(x86_config)
        assert f"[Output_7] {key}: no longer a key of this section: set ProcessorName in " \
               "[App] instead" in str(err.value)

    for registry in (SOURCE_LOGGERS, AREA_LOGGERS, OUTPUTS, PERIODIC_TASKS):
        registry.discover()
        for part in registry.names():
            keys = {f.alias for f in registry.get(part).Config.model_fields.values()}
            assert not keys & {"ProcessorName", "Processor"}, part
