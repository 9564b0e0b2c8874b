"""``audience``: passing by, stop-and-look sequences, conversion, demographics breakdown and the
flush at close, on synthetic tracks with hand-computable answers (10 fps, 0.1 s per frame)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from libs.config import load_config
from libs.post_processors.audience import (
    AGE_COLUMNS,
    AUDIENCE_COLUMNS,
    AUDIENCE_LOG_FOLDER,
    EMOTION_COLUMNS,
    GENDER_COLUMNS,
    Audience,
    AudienceConfig,
    age_band,
)
from libs.records import AudienceSample, AudienceSession
from processor.pipeline import finish_stream
from tests.audience_helpers import (
    START,
    Person,
    config_in,
    file_logger,
    run_scene,
    standing,
    walking,
    write_config,
)

LOG = AUDIENCE_LOG_FOLDER


def stage(tmp_path: Path, shared: Path, **settings: object) -> Audience:
    config = config_in(tmp_path, shared)
    section = AudienceConfig.model_validate({"Name": "audience", **settings})
    return Audience(section, config.sources[0], config)


def looking(person: Person, frames: range | list[int]) -> Person:
    """``looking`` true on ``frames``, false on the person's other frames."""
    person.attributes["looking"] = {k: k in frames for k in person.feet}
    return person


def by_track(events: list[dict]) -> dict[int, dict]:
    return {e["TrackId"]: e for e in events}


def test_passing_by_needs_one_second(tmp_path, shared) -> None:
    aud = stage(tmp_path, shared)
    short = walking(1, range(0, 6))  # frames 0-5: 0.5 s
    long = walking(2, range(0, 16))  # frames 0-15: 1.5 s
    exact = walking(3, range(0, 11))  # frames 0-10: 1.0 s, >= 1 s passes
    run = run_scene(aud, [short, long, exact], range(0, 16))
    ev = by_track(run.events)
    assert (ev[1]["Present"], ev[1]["PassingBy"]) == ("0.500", 0)
    assert (ev[2]["Present"], ev[2]["PassingBy"]) == ("1.500", 1)
    assert (ev[3]["Present"], ev[3]["PassingBy"]) == ("1.000", 1)
    assert all(e["Interested"] == 0 and e["Stopped"] == "0.000" for e in run.events)
    assert run.total(LOG, "People") == 3 and run.total(LOG, "PassingBy") == 2


def test_stop_and_look_sequences(tmp_path, shared) -> None:
    aud = stage(tmp_path, shared)
    # stands still frames 0-31: the speed is known from the second frame, so stopped is
    # intervals 1->2 ... 30->31 = 3.0 s (>= 3); looks frames 0-19: 2.0 s (> 1) -> interested
    a = looking(standing(1, range(0, 32)), range(0, 20))
    # the same stop, looking 0.5 s only -> not interested
    b = looking(standing(2, range(0, 32), x=100), range(0, 5))
    # looking exactly 1.0 s is not more than 1 s -> not interested
    c = looking(standing(3, range(0, 32), x=500), range(0, 10))
    # looks 2 s but stops only 2.9 s -> not interested
    d = looking(standing(4, range(0, 31), x=200), range(0, 20))
    # walks by looking all the time -> passing by only
    e = looking(walking(5, range(0, 40)), range(0, 40))
    run = run_scene(aud, [a, b, c, d, e], range(0, 40))
    ev = by_track(run.events)
    assert (ev[1]["Stopped"], ev[1]["Looking"], ev[1]["Interested"]) == ("3.000", "2.000", 1)
    assert (ev[2]["Stopped"], ev[2]["Looking"], ev[2]["Interested"]) == ("3.000", "0.500", 0)
    assert (ev[3]["Looking"], ev[3]["Interested"]) == ("1.000", 0)
    assert (ev[4]["Stopped"], ev[4]["Interested"]) == ("2.900", 0)
    assert (ev[5]["Stopped"], ev[5]["Looking"], ev[5]["Interested"]) == ("0.000", "3.900", 0)
    assert [ev[k]["PassingBy"] for k in range(1, 6)] == [1, 1, 1, 1, 1]
    assert run.total(LOG, "Interested") == 1
    assert run.total(LOG, "InterestedStopMs") == 3000
    assert run.total(LOG, "InterestedLookMs") == 2000
    # demographics off: empty in the events, zero in every breakdown column
    assert all(ev[k]["AgeBand"] == ev[k]["Gender"] == ev[k]["Emotion"] == "" for k in ev)
    breakdown = [*AGE_COLUMNS.values(), *GENDER_COLUMNS.values(), *EMOTION_COLUMNS.values()]
    assert all(run.total(LOG, column) == 0 for column in breakdown)


def test_thresholds_are_configurable(tmp_path, shared) -> None:
    aud = stage(tmp_path, shared, StopSeconds=1, LookSeconds=0.2, PassingSeconds=2)
    a = looking(standing(1, range(0, 16)), range(0, 5))  # stopped 1.4 s, looking 0.5 s
    run = run_scene(aud, [a], range(0, 16))
    assert (run.events[0]["PassingBy"], run.events[0]["Interested"]) == (0, 1)


def test_looking_falls_back_to_engaged_and_is_else_unknown(tmp_path, shared) -> None:
    aud = stage(tmp_path, shared)
    a = standing(1, range(0, 41))
    a.attributes["engaged"] = {k: k < 25 for k in range(41)}
    b = standing(2, range(0, 41), x=100)  # no looking, no engaged: unknown
    run = run_scene(aud, [a], range(0, 41))
    assert (run.events[0]["Looking"], run.events[0]["Interested"]) == ("2.500", 1)
    aud2 = stage(tmp_path, shared)
    run2 = run_scene(aud2, [b], range(0, 41))
    assert (run2.events[0]["Looking"], run2.events[0]["Interested"]) == ("", 0)
    assert run2.events[0]["Stopped"] == "3.900"


def test_a_walker_who_stops(tmp_path, shared) -> None:
    aud = stage(tmp_path, shared)
    # walks 1 box height per second for frames 0-10 (x 50 -> 150), then stands at x = 150
    # until frame 60. The speed is measured over the last second: it falls below 0.2 heights/s
    # once the point one second back is less than 20 px away: from frame 19 (x 140 at frame 9)
    p = Person(1, {k: (50.0 + 10.0 * min(k, 10), 400.0) for k in range(0, 61)})
    run = run_scene(aud, [looking(p, range(0, 61))], range(0, 61))
    stopped_from = 19
    assert run.events[0]["Stopped"] == f"{(60 - stopped_from) / 10:.3f}"
    assert run.events[0]["Interested"] == 1


def test_conversion_from_the_raw_counts(tmp_path, shared) -> None:
    aud = stage(tmp_path, shared)
    people = [walking(k, range(0, 20), y=100.0 * k) for k in range(1, 4)]  # 3 passers-by
    people.append(looking(standing(4, range(0, 40)), range(0, 30)))  # interested
    people.append(walking(5, range(0, 5)))  # 0.4 s: not even passing by
    run = run_scene(aud, people, range(0, 40))
    passing, interested = run.total(LOG, "PassingBy"), run.total(LOG, "Interested")
    assert (run.total(LOG, "People"), passing, interested) == (5, 4, 1)
    assert interested / passing == 0.25
    assert run.total(LOG, "InterestedStopMs") / interested == 3800
    assert run.total(LOG, "InterestedLookMs") / interested == 3000


def test_demographics_breakdown_of_the_interested(tmp_path, shared) -> None:
    aud = stage(tmp_path, shared)
    a = looking(standing(1, range(0, 41)), range(0, 41))
    a.attributes.update(
        age={k: (float("nan") if k < 5 else 41.5) for k in range(41)},
        gender={k: 0 for k in range(41)},
        emotion={k: 3 for k in range(41)},
    )
    b = looking(standing(2, range(0, 41), x=100), range(0, 41))
    b.attributes.update(age={k: float("nan") for k in range(41)},
                        gender={k: -1 for k in range(41)}, emotion={k: -1 for k in range(41)})
    c = walking(3, range(0, 20))  # passes by: not in the breakdown
    c.attributes.update(age={k: 20.0 for k in range(20)}, gender={k: 1 for k in range(20)},
                        emotion={k: 6 for k in range(20)})
    run = run_scene(aud, [a, b, c], range(0, 41))
    ev = by_track(run.events)
    assert (ev[1]["AgeBand"], ev[1]["Gender"], ev[1]["Emotion"]) == ("35-54", "female", "happy")
    assert (ev[2]["AgeBand"], ev[2]["Gender"], ev[2]["Emotion"]) == ("unknown",) * 3
    assert (ev[3]["AgeBand"], ev[3]["Gender"], ev[3]["Emotion"]) == ("18-34", "male", "neutral")
    counts = {column: run.total(LOG, column) for column in AUDIENCE_COLUMNS}
    assert counts["Interested"] == 2
    assert counts["InterestedAge35To54"] == 1 and counts["InterestedAgeUnknown"] == 1
    assert counts["InterestedFemale"] == 1 and counts["InterestedGenderUnknown"] == 1
    assert counts["InterestedHappy"] == 1 and counts["InterestedEmotionUnknown"] == 1
    assert counts["InterestedMale"] == counts["InterestedNeutral"] == 0
    for columns in (AGE_COLUMNS, GENDER_COLUMNS, EMOTION_COLUMNS):
        assert sum(counts[c] for c in columns.values()) == counts["Interested"]


def test_age_bands() -> None:
    assert [age_band(a) for a in (0.25, 17.9, 18, 34.99, 35, 54, 55, 80)] == [
        "0-17", "0-17", "18-34", "18-34", "35-54", "35-54", "55+", "55+"]
    assert age_band(float("nan")) == "unknown"
    assert list(AGE_COLUMNS.values()) == [
        "InterestedAge0To17", "InterestedAge18To34", "InterestedAge35To54",
        "InterestedAge55Plus", "InterestedAgeUnknown"]


def test_tracks_end_after_the_gap_and_samples_follow_the_logger(tmp_path, shared) -> None:
    aud = stage(tmp_path, shared)
    run = run_scene(aud, [walking(1, range(0, 15))], range(0, 60), finish=False)
    # last seen at 1.4 s, ended at the first frame more than 3 s later (4.5 s), which opens a
    # raw-log slot itself (TimeInterval 0.5 s: rows at frames 0, 5, 10, ...)
    assert len(run.events) == 1
    ended = next(f for f in run.frames if any(isinstance(r, AudienceSession) for r in f.records))
    assert ended.index == 45
    carrying = [f.index for f in run.frames for r in f.records
                if isinstance(r, AudienceSample) and r.people]
    assert carrying == [45]
    assert [f.index for f in run.frames for r in f.records if isinstance(r, AudienceSample)] == (
        list(range(0, 60, 5)))
    assert [f.index for f in run.frames if f.sample_due] == list(range(0, 60, 5))


def test_close_flushes_open_tracks(tmp_path, shared, monkeypatch) -> None:
    monkeypatch.delenv("LOOKOUT_DATA_DIR", raising=False)
    aud = stage(tmp_path, shared)
    logger = file_logger(aud.app)
    a = looking(standing(1, range(0, 41)), range(0, 41))
    b = walking(2, range(30, 41))
    run = run_scene(aud, [a, b], range(0, 41), finish=False, logger=logger)
    assert run.events == [] and run.total(LOG, "People") == 0
    last = run.frames[-1].timestamp
    finish_stream("pets-view1", last, [("audience", aud)], [("fs", logger)])
    logger.close()
    root = tmp_path / "data" / "processor/static/data/sources" / "pets-view1"
    with open(root / "events" / "audience" / "2024-05-06.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["TrackId"], r["Present"], r["PassingBy"], r["Interested"]) for r in rows] == [
        ("1", "4.000", "1", "1"), ("2", "1.000", "1", "0")]
    assert list(rows[0]) == ["Timestamp", "TrackId", "Present", "Stopped", "Looking",
                             "PassingBy", "Interested", "AgeBand", "Gender", "Emotion"]
    with open(root / LOG / "2024-05-06.csv", newline="") as fh:
        *logged, sample = list(csv.DictReader(fh))
    assert len(logged) == 9 and all(r["People"] == "0" for r in logged)  # 0.0 ... 4.0 s
    assert sample["Timestamp"] == "2024-05-06T10:00:04.001+00:00"
    assert (sample["People"], sample["PassingBy"], sample["Interested"]) == ("2", "2", "1")
    assert list(sample)[1:] == list(AUDIENCE_COLUMNS)
    again = finish_stream("pets-view1", last, [("audience", aud)], [])
    assert again.records == []  # nothing left: no more rows
    assert len((root / LOG / "2024-05-06.csv").read_text().splitlines()) == 11


def test_finish_without_frames_or_logger_writes_nothing(tmp_path, shared, monkeypatch) -> None:
    monkeypatch.delenv("LOOKOUT_DATA_DIR", raising=False)
    aud = stage(tmp_path, shared)
    end = finish_stream("pets-view1", START, [("audience", aud)], [])
    assert end.records == []  # no frame seen
    aud.close()
    assert not (tmp_path / "data").exists()
    folder = tmp_path / "nolog"
    folder.mkdir()
    path = write_config(folder, shared)
    on = "Name = file_system_logger\nEnabled = True\nTimeInterval"
    assert on in path.read_text()
    path.write_text(path.read_text().replace(on, on.replace("True", "False")))
    config = load_config(path, check_files=False)
    aud = Audience(AudienceConfig.model_validate({"Name": "audience"}), config.sources[0], config)
    run = run_scene(aud, [walking(1, range(0, 15))], range(0, 15), finish=False)
    end = finish_stream("pets-view1", run.frames[-1].timestamp, [("audience", aud)], [])
    assert [r.kind for r in end.records] == ["audience", "audience_log"]  # the open track
    # ends on the end frame...
    aud.close()
    assert not (folder / "data").exists()  # ...and with no logger, nothing is written


@pytest.mark.parametrize("bad", [{"StopSpeed": 0}, {"PassingSeconds": -1}])
def test_config_is_checked(bad: dict) -> None:
    with pytest.raises(ValueError):
        AudienceConfig.model_validate({"Name": "audience", **bad})
