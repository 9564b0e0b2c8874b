"""``GET /metrics/cameras/audience/report`` over HTTP, on data written by the real stages
(``engagement``, ``audience``), the real file logger and the real report recomputation.

Four scenes (10 fps) on two local days in Asia/Kolkata (UTC+05:30); each scene ends with an
empty frame 5 s after its last one, which ends its tracks.  Per scene, by hand:

===========  ===================================================  ======  =====  ==========
scene        people                                               people  pass   interested
===========  ===================================================  ======  =====  ==========
day 0 09:10  3 walk 2 s; 1 stands 4 s (stopped 3.9) looks 3 s,    4       4      1
             age 40, female, happy
day 0 09:40  1 walks 2 s; 1 stands 4 s looking nowhere             2       2      0
day 0 10:05  stands 5 s (stopped 4.9) looks 2 s, age 25, male,     2       2      2
             neutral; stands 4 s (3.9) looks 4 s, age 60, female,
             happy
day 1 11:00  walks 0.5 s; walks 2 s                               2       1      0
===========  ===================================================  ======  =====  ==========
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.routers.audience import include_routers
from libs.clock import IntervalGate
from libs.config import LookoutConfig, load_config
from libs.frame import Detections, Frame
from libs.loggers.file_system_logger import SourceFileSystemLogger
from libs.metrics import recompute_all
from libs.post_processors.audience import Audience
from libs.post_processors.engagement import Engagement
from libs.storage import sample_interval
from processor.summary import summary_records
from tests.audience_helpers import IMAGE, Person, frame_at, standing, walking, write_config

TZ_NAME = "Asia/Kolkata"
TZ = ZoneInfo(TZ_NAME)
PASSWORD = "password123"
URL = "/metrics/cameras/audience/report"
STAGES = """
[SourcePostProcessor_8]
Name = engagement
Enabled = True
Target = 0,240

[SourcePostProcessor_9]
Name = audience
Enabled = True
"""
DEMOGRAPHICS = """
[SourcePostProcessor_10]
Name = demographics
Enabled = True
"""


def profile(person: Person, looks: range | None, age: float, gender: int,
            emotion: int) -> Person:
    frames = list(person.feet)
    if looks is not None:
        person.attributes["looking"] = {k: k in looks for k in frames}
    person.attributes["age"] = {k: age for k in frames}
    person.attributes["gender"] = {k: gender for k in frames}
    person.attributes["emotion"] = {k: emotion for k in frames}
    return person


def scenes() -> list[tuple[int, time, list[Person]]]:
    nan = float("nan")
    return [
        (0, time(9, 10), [
            walking(1, range(0, 21), y=100), walking(2, range(0, 21), y=200),
            walking(3, range(0, 21), y=300),
            profile(standing(4, range(0, 41)), range(0, 30), 40.0, 0, 3),
        ]),
        (0, time(9, 40), [
            walking(5, range(0, 21), y=100),
            profile(standing(6, range(0, 41)), range(0), 33.0, 1, 6),
        ]),
        (0, time(10, 5), [
            profile(standing(7, range(0, 51)), range(0, 20), 25.0, 1, 6),
            profile(standing(8, range(0, 41), x=100), range(0, 41), 60.0, 0, 3),
        ]),
        (1, time(11, 0), [
            walking(9, range(0, 6), y=100),
            profile(walking(10, range(0, 21), y=200), None, nan, -1, -1),
        ]),
    ]


@dataclass(frozen=True)
class World:
    config_path: Path
    plain_config_path: Path
    config: LookoutConfig
    yday: date
    today: date

    def hour(self, day: int, h: int) -> str:
        return datetime.combine(self.yday + timedelta(days=day), time(h), tzinfo=TZ).isoformat()


def write_data(folder: Path, shared: Path) -> World:
    path = write_config(folder, shared, STAGES + DEMOGRAPHICS)
    path.write_text(path.read_text().replace("TimeZone = UTC", f"TimeZone = {TZ_NAME}"))
    plain = folder / "plain.ini"  # the same cameras and data, demographics not configured
    plain.write_text(path.read_text().replace(DEMOGRAPHICS, ""))
    config = load_config(path)
    source = config.sources[0]
    sections = {p.name: p for p in config.source_post_processors}
    stages = [Engagement(sections["engagement"], source, config),
              Audience(sections["audience"], source, config)]
    fs = next(s for s in config.source_loggers if s.name == "file_system_logger")
    logger = SourceFileSystemLogger(fs, source, config)
    clock = IntervalGate(sample_interval(config))  # the pipeline's sample clock
    today = datetime.now(TZ).date()
    yday = today - timedelta(days=1)
    index = 0
    for day, at, people in scenes():
        start = datetime.combine(yday + timedelta(days=day), at, tzinfo=TZ)
        last = max(max(p.feet) for p in people)
        frames = [frame_at(k, people, start) for k in range(last + 1)]
        frames.append(Frame("pets-view1", 0, start + timedelta(seconds=last / 10 + 5), IMAGE,
                            Detections()))
        for frame in frames:
            frame.index = index
            index += 1
            frame.sample_due = clock.due(frame.timestamp)
            for stage in stages:
                frame = stage.process(frame)
            summary_records(frame)
            logger.log(frame)
    logger.close()
    for stage in stages:
        stage.close()
    results = recompute_all(config)
    assert results and all(r.error is None for r in results)
    return World(path, plain, config, yday, today)


@pytest.fixture(scope="module")
def world(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("LOOKOUT_DATA_DIR", raising=False)
        yield write_data(tmp_path_factory.mktemp("audience_api"), shared)


def client_for(config_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("LOOKOUT_DATA_DIR", raising=False)
        app = create_app(config_path)
        include_routers(app)
        include_routers(app)  # idempotent
        with TestClient(app) as client:
            users = client.app.state.context.users  # type: ignore[attr-defined]
            if users.get("viewer1") is None:
                users.add("viewer1", PASSWORD, "viewer")
            r = client.post("/auth/token", data={"username": "viewer1", "password": PASSWORD})
            assert r.status_code == 200, r.text
            yield client, {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture(scope="module")
def api(world: World) -> Iterator[tuple[TestClient, dict[str, str]]]:
    yield from client_for(world.config_path)


def get(api: tuple[TestClient, dict[str, str]], url: str, status: int = 200,
        **params: str) -> Any:
    client, headers = api
    r = client.get(url, params=params, headers=headers)
    assert r.status_code == status, r.text
    return r.json()


def camera(body: dict[str, Any]) -> dict[str, Any]:
    (cam,) = body["cameras"]
    assert cam["id"] == "pets-view1"
    return cam


def zeros(labels: list[str]) -> dict[str, int]:
    return dict.fromkeys(labels, 0)


AGES = ["0-17", "18-34", "35-54", "55+", "unknown"]
GENDERS = ["male", "female", "unknown"]
EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "unknown"]


def test_one_call_gives_every_bucket(api, world: World) -> None:
    body = get(api, URL, from_date=world.yday.isoformat(), to_date=world.today.isoformat())
    assert body["buckets"] == ["by_hour", "by_day", "global"] and body["demographics"] is True
    assert body["time_zone"] == TZ_NAME
    cam = camera(body)
    hours = cam["by_hour"]
    assert [h["hour"] for h in hours] == [world.hour(0, 9), world.hour(0, 10), world.hour(1, 11)]
    assert hours[0]["hour"].endswith("T09:00:00+05:30")
    h9, h10, h11 = hours
    assert h9 == {
        "hour": world.hour(0, 9), "people": 6, "passing_by": 6, "interested": 1,
        "conversion": 0.1667, "average_stop_seconds": 3.9, "average_attention_seconds": 3.0,
        "age": {**zeros(AGES), "35-54": 1}, "gender": {**zeros(GENDERS), "female": 1},
        "emotion": {**zeros(EMOTIONS), "happy": 1},
    }
    assert (h10["people"], h10["passing_by"], h10["interested"]) == (2, 2, 2)
    assert (h10["conversion"], h10["average_stop_seconds"]) == (1.0, 4.4)
    assert h10["average_attention_seconds"] == 3.0  # (2 + 4) / 2
    assert h10["age"] == {**zeros(AGES), "18-34": 1, "55+": 1}
    assert h10["gender"] == {**zeros(GENDERS), "male": 1, "female": 1}
    assert h10["emotion"] == {**zeros(EMOTIONS), "neutral": 1, "happy": 1}
    assert (h11["people"], h11["passing_by"], h11["interested"]) == (2, 1, 0)
    assert h11["conversion"] == 0.0
    assert h11["average_stop_seconds"] is None and h11["average_attention_seconds"] is None
    day0, day1 = cam["by_day"]
    assert (day0["date"], day1["date"]) == (world.yday.isoformat(), world.today.isoformat())
    assert (day0["people"], day0["passing_by"], day0["interested"]) == (8, 8, 3)
    assert day0["conversion"] == 0.375
    assert day0["average_stop_seconds"] == pytest.approx(12.7 / 3, abs=1e-4)
    whole = cam["global"]
    assert (whole["people"], whole["passing_by"], whole["interested"]) == (10, 9, 3)
    assert whole["conversion"] == pytest.approx(3 / 9, abs=1e-4)
    assert whole["average_attention_seconds"] == 3.0
    # every grouping is an exact sum of the finer one
    for key in ("people", "passing_by", "interested"):
        assert sum(h[key] for h in hours) == sum(d[key] for d in cam["by_day"]) == whole[key]
    for group in ("age", "gender", "emotion"):
        assert sum(whole[group].values()) == whole["interested"]


def test_buckets_dates_and_defaults(api, world: World) -> None:
    body = get(api, URL, buckets="global", from_date=world.today.isoformat())
    cam = camera(body)
    assert body["buckets"] == ["global"] and set(cam) == {"id", "global"}
    assert (cam["global"]["people"], cam["global"]["passing_by"]) == (2, 1)
    assert cam["global"]["conversion"] == 0.0  # nobody interested, of 1 passer-by
    body = get(api, URL, buckets="global,by_day")  # default: the 7 days ending today
    assert body["buckets"] == ["by_day", "global"]
    assert body["to_date"] == world.today.isoformat()
    assert body["from_date"] == (world.today - timedelta(days=6)).isoformat()
    assert camera(body)["global"]["passing_by"] == 9
    # a range without data: no hours or days, a global bucket of zeros and nulls
    empty = camera(get(api, URL, from_date="2020-01-01", to_date="2020-01-31"))
    assert empty["by_hour"] == [] and empty["by_day"] == []
    assert empty["global"]["people"] == 0 and empty["global"]["conversion"] is None
    assert get(api, URL, cameras="")["cameras"] == []


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"buckets": "by_week"}, 422, "buckets"),
        ({"buckets": " , "}, 422, "buckets"),
        ({"from_date": "2024-13-01"}, 422, "from_date"),
        ({"from_date": "2024-02-02", "to_date": "2024-02-01"}, 422, "from_date"),
        ({"from_date": "2020-01-01", "to_date": "2024-01-01"}, 422, "to_date"),
        ({"cameras": "../etc"}, 422, "cameras"),
        ({"cameras": "nope"}, 404, None),
    ],
)
def test_bad_queries(api, params: dict[str, str], status: int, field: str | None) -> None:
    body = get(api, URL, status, **params)
    if field is not None:
        assert body["detail"][0]["loc"] == ["query", field]


def test_needs_a_login(api) -> None:
    client, _ = api
    assert client.get(URL).status_code == 401


def test_no_breakdowns_without_demographics_in_the_config(world: World) -> None:
    for api in client_for(world.plain_config_path):
        body = get(api, URL, from_date=world.yday.isoformat())
        assert body["demographics"] is False
        whole = camera(body)["global"]
        assert "age" not in whole and "gender" not in whole and "emotion" not in whole
        assert whole["interested"] == 3


def test_report_kinds_in_the_metrics_table(api, world: World) -> None:
    kinds = {(k["entity_type"], k["kind"]) for k in get(api, "/metrics/kinds")}
    assert {("camera", "audience"), ("camera", "engagement")} <= kinds
    daily = get(api, "/metrics/cameras/audience/daily", from_date=world.yday.isoformat())
    rows = daily["entities"][0]["rows"]
    assert [r["SumPassingBy"] for r in rows] == [8, 1]
    assert daily["entities"][0]["totals"]["SumInterestedStopMs"] == 12700
    eng = get(api, "/metrics/cameras/engagement/daily", from_date=world.yday.isoformat())
    totals = eng["entities"][0]["totals"]
    # everybody walked away from the target (or stood, without a head pose): nobody engaged;
    # camera time observed: the scenes' 4 + 4 + 5 + 2 s
    assert (totals["SumPeople"], totals["SumEngagedPeople"]) == (10, 0)
    assert totals["SumObservedMs"] == 15000
