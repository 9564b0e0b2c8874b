"""Which cameras a configuration change restarts is derived from the config models' markers.

Every section of ``LookoutConfig`` and every key of the sections classified key by key carries
a ``Restarts`` marker where it is declared; these tests fail for an unmarked one, check the
derived restarts on real configuration files, and run one real supervisor through reloads.
"""

from __future__ import annotations

import os
import time
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from libs.config import ConfigChange, load_config, save_config_changes
from libs.config.models import LookoutConfig, PluginConfig
from libs.config.restarts import Restarts, changed_cameras, classified_fields, marker
from libs.config.writer import apply_changes
from processor.supervisor import Supervisor
from tests.test_supervisor import running_supervisor, wait_until

TUD_SECTION = """
[Source_1]
Id = tud
Name = TUD campus
VideoPath = data/tud_campus/tud_campus.mp4
StartTime = 2009-03-01T12:00:00+00:00
"""
BOTH = {"pets-view1", "tud"}


def _list_of_str(info_annotation: object) -> bool:
    return typing.get_origin(info_annotation) is list and \
        typing.get_args(info_annotation) == (str,)


def test_every_section_and_key_is_classified() -> None:
    fields = dict(classified_fields(LookoutConfig))
    unmarked = [name for name, info in fields.items() if marker(info) is None]
    assert unmarked == []
    # every section is enumerated, and the App and Area keys one by one
    assert set(LookoutConfig.model_fields) <= set(fields)
    assert {"app.max_processes", "app.time_zone", "areas.cameras"} <= set(fields)
    assert len([n for n in fields if n.startswith("app.")]) == 25
    # markers fit what they mark
    for name, info in fields.items():
        how = marker(info)
        if how is Restarts.LISTED_CAMERAS:
            assert _list_of_str(info.annotation), name
        if how in (Restarts.BY_KEY, Restarts.OWN_CAMERA):
            assert "." not in name, name


def test_a_new_unmarked_section_or_key_is_found() -> None:
    class WithOutputs(LookoutConfig):
        outputs: list[PluginConfig] = []

    class App2(BaseModel):
        max_processes: typing.Annotated[int, Restarts.NO_CAMERA] = 1
        new_key: int = 0

    class WithApp2(LookoutConfig):
        app: typing.Annotated[App2, Restarts.BY_KEY]  # type: ignore[assignment]

    def unmarked(model: type[BaseModel]) -> list[str]:
        return [n for n, i in classified_fields(model) if marker(i) is None]

    assert unmarked(WithOutputs) == ["outputs"]
    assert unmarked(WithApp2) == ["app.new_key"]


@pytest.fixture
def two_camera_config(x86_config: Path) -> Path:
    x86_config.write_text(x86_config.read_text() + TUD_SECTION + WEBHOOKS)
    return x86_config


# As the reference ships it (off, no endpoint), and a processor-wide one.
WEBHOOKS = """
[SourceLogger_3]
Name = web_hook_logger
Endpoint =
Authorization =
TimeInterval = 0.5
Enabled = False
SendingInterval = 5

[Output_0]
Name = web_hook_logger
Endpoint = http://127.0.0.1:9/hook
Enabled = False
"""


CHANGES: list[tuple[str, dict[str, str], set[str]]] = [
    ("App", {"MaxProcesses": "4"}, set()),
    ("App", {"MaxThreadRestarts": "9"}, set()),
    ("App", {"HasBeenConfigured": "True"}, set()),
    ("App", {"SlackChannel": "ops"}, set()),
    ("App", {"TimeZone": "Europe/London"}, BOTH),
    ("App", {"ProcessorName": "store-9"}, BOTH),  # s3_logger's keys, in the pipeline
    ("App", {"ProcessAreas": "False"}, BOTH),
    ("API", {"Port": "8123"}, set()),
    ("Detector", {"MinScore": "0.5"}, BOTH),
    ("Tracker", {"MaxLost": "9"}, BOTH),
    ("SourcePostProcessor_1", {"DistThreshold": "150"}, BOTH),
    ("SourceLogger_1", {"TimeInterval": "1"}, BOTH),
    # Sinks on the supervisor's bus never restart a camera.
    ("SourceLogger_3", {"Endpoint": "https://example.com/hook", "Enabled": "True"}, set()),
    ("Output_0", {"Enabled": "True", "SendingInterval": "1"}, set()),
    ("AreaLogger_0", {"Enabled": "False"}, set()),
    ("PeriodicTask_0", {"LiveInterval": "20"}, set()),
    ("Area_0", {"OccupancyThreshold": "99", "Name": "Elsewhere"}, set()),
    ("Area_0", {"Cameras": "pets-view1,tud"}, {"tud"}),
    ("Area_0", {"Cameras": "tud"}, BOTH),
    ("Area_1", {"Id": "second", "Cameras": "pets-view1"}, set()),
    ("Area_1", {"Id": "second", "Cameras": "tud"}, {"tud"}),
    ("Source_1", {"ROI": "0,0; 640,0; 640,480"}, {"tud"}),
    ("Source_0", {"Tags": "a,b"}, {"pets-view1"}),
]


@pytest.mark.parametrize("section, values, restarted", CHANGES,
                         ids=[f"{s}-{','.join(v)}" for s, v, _ in CHANGES])
def test_a_change_restarts_exactly_the_affected_cameras(
    two_camera_config: Path, section: str, values: dict[str, str], restarted: set[str]
) -> None:
    copy = two_camera_config.with_name("changed.ini")
    text = apply_changes(two_camera_config.read_text(), [ConfigChange(section, values)])
    copy.write_text(text)
    for written in (two_camera_config, copy):  # whole files: no wait for them to settle
        os.utime(written, (time.time() - 60, time.time() - 60))
    old = load_config(two_camera_config, check_files=False)
    new = load_config(copy, check_files=False)
    # the change is real (plugin sections dumped as their own models, not PluginConfig)
    assert old.model_dump(exclude={"path"}, serialize_as_any=True) != \
        new.model_dump(exclude={"path"}, serialize_as_any=True)
    assert changed_cameras(old, new) == restarted


# ---------------------------------------------------------------------------------------
# A real supervisor
# ---------------------------------------------------------------------------------------


@pytest.fixture
def supervisor(two_camera_config: Path) -> Iterator[tuple[Supervisor, Path]]:
    with running_supervisor(two_camera_config) as sup:
        yield sup, two_camera_config


def test_supervisor_reloads_restart_what_the_markers_say(supervisor) -> None:
    sup, path = supervisor

    def status() -> dict:
        return sup.submit(sup.camera_status).result(10)

    def reload(section: str, values: dict[str, str]) -> dict[str, list[str]]:
        save_config_changes(path, [ConfigChange(section, values)])
        result: dict[str, list[str]] = sup.submit(sup.reload).result(30)
        return result

    wait_until(lambda: status()["pets-view1"]["frames"] > 5, 60, "PETS frames")
    pets_worker = [w.process.pid for w in sup.workers if "pets-view1" in w.cameras]

    # not a pipeline key: nothing restarts, the running camera keeps its worker
    assert reload("App", {"MaxProcesses": "2"}) == {
        "started": [], "restarted": [], "stopped": []}
    # the area's cameras: only the camera that joins restarts
    assert reload("Area_0", {"Cameras": "pets-view1,tud"}) == {
        "started": [], "restarted": ["tud"], "stopped": []}
    frames = status()["pets-view1"]["frames"]
    time.sleep(0.3)
    assert status()["pets-view1"]["frames"] > frames  # kept running throughout
    assert [w.process.pid for w in sup.workers if "pets-view1" in w.cameras] == pets_worker
    # the detector: every camera restarts
    result = reload("Detector", {"MinScore": "0.4"})
    assert (result["started"], sorted(result["restarted"]), result["stopped"]) == (
        [], ["pets-view1", "tud"], [])
    wait_until(lambda: status()["pets-view1"]["status"] in ("running", "finished"), 30,
               "PETS again")
