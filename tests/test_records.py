"""Typed records (libs/records.py) and their documentation (docs/events.md).

The document is parsed: every kind, field, type, unit and CSV column it lists must be in the
code and the other way round, and every JSON example must read back and write out to the same
bytes.  Then ids, time zones, NaN and the refusals of ``from_json``.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import re
import threading
import time
import types
import typing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from libs import records as R
from tests.conftest import REPO

DOC = REPO / "docs" / "events.md"
TZ = timezone(timedelta(hours=1))
T = datetime(2024, 10, 27, 1, 30, tzinfo=TZ)


# ---------------------------------------------------------------------------------------
# Parsing docs/events.md
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Section:
    title: str
    rows: list[list[str]] = dataclasses.field(default_factory=list)
    class_line: str | None = None
    examples: list[str] = dataclasses.field(default_factory=list)


def parse_doc() -> tuple[list[str], dict[str, Section], dict[str, Section]]:
    """(envelope rows' field names, kind sections, nested-object sections)."""
    kinds: dict[str, Section] = {}
    structs: dict[str, Section] = {}
    envelope = Section("envelope")
    current: Section | None = None
    chapter = ""
    in_json = False
    for line in DOC.read_text().splitlines():
        if in_json:
            if line.startswith("```"):
                in_json = False
            else:
                assert current is not None
                current.examples.append(line)
            continue
        if line.startswith("## "):
            chapter = line[3:].strip()
            current = envelope if chapter == "Envelope" else None
            continue
        m = re.fullmatch(r"### `(\w+)`", line)
        if m:
            current = Section(m.group(1))
            target = structs if chapter == "Nested objects" else kinds
            assert current.title not in target, f"{current.title} documented twice"
            target[current.title] = current
            continue
        if current is None:
            continue
        if line.startswith("```json"):
            in_json = True
        elif line.startswith("Class `"):
            current.class_line = line
        elif line.startswith("| `"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            assert len(cells) == 5, f"table row without 5 cells: {line}"
            current.rows.append(cells)
    return [r[0].strip("`") for r in envelope.rows], kinds, structs


def type_name(tp: Any) -> str:
    """How docs/events.md writes a field's type."""
    simple = {int: "int", float: "number", bool: "bool", str: "string", datetime: "time"}
    if tp in simple:
        return simple[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(f'"{a}"' for a in args)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return f"{type_name(inner)} or null"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {type_name(args[0])}"
        return "[" + ", ".join(type_name(a) for a in args) + "]"
    if origin is dict:
        return f"object of {type_name(args[1])}"
    assert isinstance(tp, type) and issubclass(tp, R.Struct), tp
    return tp.__name__


def expected_rows(cls: type[R.Struct]) -> list[list[str]]:
    hints = typing.get_type_hints(cls)
    rows = []
    for f in R.fields_of(cls):
        csv = f.metadata["csv"]
        csv_cell = ", ".join(f"`{c.strip()}`" for c in csv.split(",")) if csv else "—"
        rows.append([f"`{f.name}`", type_name(hints[f.name]), f.metadata["unit"] or "—",
                     csv_cell])
    return rows


def nested_structs(cls: type[R.Struct]) -> set[type[R.Struct]]:
    found: set[type[R.Struct]] = set()

    def walk(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, R.Struct):
            found.add(tp)
        for arg in typing.get_args(tp):
            walk(arg)

    for hint in typing.get_type_hints(cls).values():
        walk(hint)
    return found


DOC_ENVELOPE, DOC_KINDS, DOC_STRUCTS = parse_doc()


# ---------------------------------------------------------------------------------------
# The document and the code agree
# ---------------------------------------------------------------------------------------


def test_doc_lists_exactly_the_registered_kinds() -> None:
    assert len(R.RECORD_TYPES) == 24
    missing = sorted(set(R.RECORD_TYPES) - set(DOC_KINDS))
    extra = sorted(set(DOC_KINDS) - set(R.RECORD_TYPES))
    assert not missing, f"kinds in the code, not in docs/events.md: {missing}"
    assert not extra, f"kinds in docs/events.md, not in the code: {extra}"
    categories = {cls.CATEGORY for cls in R.RECORD_TYPES.values()}
    assert categories == set(R.CATEGORIES)


def test_doc_envelope_is_the_code_envelope() -> None:
    assert list(R.ENVELOPE) == DOC_ENVELOPE
    code = [f.name for f in dataclasses.fields(R.Record)]
    assert ["schema", "kind", *code] == list(R.ENVELOPE)
    # The envelope's own rows: the types and units of the code.
    envelope_rows = {r[0]: r for r in expected_rows_of_envelope()}
    text = DOC.read_text()
    for name, row in envelope_rows.items():
        assert f"| {' | '.join(row)} |" in text, f"envelope row of {name} differs: {row}"


def expected_rows_of_envelope() -> list[list[str]]:
    hints = typing.get_type_hints(R.Record)
    rows = []
    for f in dataclasses.fields(R.Record):
        csv = f.metadata["csv"]
        rows.append([f"`{f.name}`", type_name(hints[f.name]), f.metadata["unit"] or "—",
                     f"`{csv}`" if csv else "—"])
    return rows


@pytest.mark.parametrize("kind", sorted(R.RECORD_TYPES))
def test_doc_fields_are_the_code_fields(kind: str) -> None:
    cls = R.RECORD_TYPES[kind]
    section = DOC_KINDS[kind]
    doc_rows = [row[:4] for row in section.rows]
    code_rows = expected_rows(cls)
    doc_names = [r[0] for r in doc_rows]
    code_names = [r[0] for r in code_rows]
    assert not set(code_names) - set(doc_names), \
        f"{kind}: fields in the code, not in the doc: {sorted(set(code_names) - set(doc_names))}"
    assert not set(doc_names) - set(code_names), \
        f"{kind}: fields in the doc, not in the code: {sorted(set(doc_names) - set(code_names))}"
    assert doc_rows == code_rows, f"{kind}: type, unit, CSV column or order differ"
    assert all(len(row[4]) > 3 for row in section.rows), f"{kind}: a field without a meaning"
    sources = ", ".join(cls.SOURCES)
    assert section.class_line == (
        f"Class `{cls.__name__}` · {cls.CATEGORY} · schema {cls.SCHEMA} · sources: {sources}"
    )


def test_doc_nested_objects_are_the_code_structs() -> None:
    used: set[type[R.Struct]] = set()
    for cls in R.RECORD_TYPES.values():
        used |= nested_structs(cls)
    for st in R.STRUCT_TYPES:
        used |= nested_structs(st)
    assert used == set(R.STRUCT_TYPES)
    assert set(DOC_STRUCTS) == {st.__name__ for st in R.STRUCT_TYPES}
    for st in R.STRUCT_TYPES:
        section = DOC_STRUCTS[st.__name__]
        assert [row[:4] for row in section.rows] == expected_rows(st), st.__name__
        assert all(len(row[4]) > 3 for row in section.rows)


@pytest.mark.parametrize("kind", sorted(R.RECORD_TYPES))
def test_doc_example_round_trips_to_the_same_bytes(kind: str) -> None:
    examples = DOC_KINDS[kind].examples
    assert len(examples) == 1, f"{kind}: one JSON example, on one line"
    text = examples[0]
    record = R.Record.from_json(text)
    assert type(record) is R.RECORD_TYPES[kind]
    assert record.kind == kind
    assert record.to_json() == text
    assert R.RECORD_TYPES[kind].from_json(text) == record
    # Every field of the kind appears in the example (none left to its default).
    data = json.loads(text)
    assert set(data) == set(R.ENVELOPE) | {f.name for f in R.fields_of(type(record))}


@pytest.mark.parametrize("kind", sorted(R.RECORD_TYPES))
def test_records_survive_pickling(kind: str) -> None:
    """Workers hand records to the supervisor over a multiprocessing queue (pickle)."""
    record = R.Record.from_json(DOC_KINDS[kind].examples[0])
    back = pickle.loads(pickle.dumps(record))
    assert back == record and back.to_json() == record.to_json()


def doc_example(kind: str) -> str:
    return DOC_KINDS[kind].examples[0]


def test_golden_examples_built_in_code_match_the_doc() -> None:
    """Records built here, field by field, give exactly the doc's JSON (stable form)."""
    ids = R.RecordIds(prefix=0x5F3A9C0E41D27B68E0A1)
    kinds = sorted(R.RECORD_TYPES, key=lambda k: list(DOC_KINDS).index(k))
    id_of = {kind: ids() for kind in kinds}  # the doc numbers its examples in page order
    crossing = R.LineCrossing(id=id_of["line_crossing"], source="camera", source_id="lobby",
                              timestamp=T, frame=751, line="door", track_id=7, direction="in")
    assert crossing.to_json() == doc_example("line_crossing")
    dwell = R.DwellSession(id=id_of["dwell"], source="camera", source_id="lobby", timestamp=T,
                           zone="scene", track_id=7, enter=T - timedelta(seconds=39.2),
                           exit=T, seconds=39.2)
    assert dwell.to_json() == doc_example("dwell")
    area = R.AreaOccupancySample(id=id_of["occupancy_log"], source="area",
                                 source_id="ground-floor", timestamp=T, occupancy=23,
                                 threshold=20, violation=True,
                                 cameras={"lobby": 14, "entrance": 9})
    assert area.to_json() == doc_example("occupancy_log")
    summary = R.FrameSummary(
        id=id_of["frame_summary"], source="camera", source_id="lobby", timestamp=T,
        frame=750, detected_objects=3, violating_objects=2, violating_pairs=1, occupancy=3,
        occupancy_threshold=20, environment_score=0.3333, min_distance_cm=142.5,
        estimated_occupancy=11, line_counts={"door": R.LineCount(in_count=31, out_count=20)},
        zone_counts={"counter": R.ZoneCount(people=2, entries=17)},
    )
    assert summary.to_json() == doc_example("frame_summary")


# ---------------------------------------------------------------------------------------
# Ids
# ---------------------------------------------------------------------------------------


def test_ids_unique_over_100k_and_across_two_runs() -> None:
    run1, run2 = R.RecordIds(), R.RecordIds()
    first = [run1() for _ in range(100_000)]
    second = [run2() for _ in range(100_000)]
    assert len(set(first)) == 100_000
    assert len(set(first) | set(second)) == 200_000
    assert all(R.ID_PATTERN.fullmatch(i) for i in first[:1000] + second[:1000])
    assert run1.prefix != run2.prefix
    # The layout: 80-bit prefix then a 48-bit sequence from 0.
    assert first[0] == f"{run1.prefix:020x}{0:012x}"
    assert first[-1] == f"{run1.prefix:020x}{99_999:012x}"
    assert int(second[5], 16) == (run2.prefix << 48) | 5


def test_ids_from_threads_sharing_a_generator_are_unique() -> None:
    ids = R.RecordIds()
    out: list[list[str]] = [[] for _ in range(4)]

    def work(k: int) -> None:
        out[k].extend(ids() for _ in range(25_000))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len({i for part in out for i in part}) == 100_000


def test_fixed_prefix_is_reproducible_and_checked() -> None:
    assert R.RecordIds(prefix=42)() == R.RecordIds(prefix=42)()
    with pytest.raises(ValueError):
        R.RecordIds(prefix=1 << 80)
    with pytest.raises(ValueError):
        R.RecordIds(prefix=-1)


def test_bad_ids_are_refused() -> None:
    for bad in ["", "ABCDEF" * 5 + "00", "0" * 31, "0" * 33, "g" * 32]:
        with pytest.raises(R.RecordError, match="id"):
            R.ZoneEntry(id=bad, source="camera", source_id="c", timestamp=T, zone="z",
                        track_id=1)


# ---------------------------------------------------------------------------------------
# Times, numbers and normalisation
# ---------------------------------------------------------------------------------------


def entry(**kw: Any) -> R.ZoneEntry:
    base: dict[str, Any] = dict(id="0" * 32, source="camera", source_id="cam", timestamp=T,
                                zone="door", track_id=3)
    base.update(kw)
    return R.ZoneEntry(**base)


def test_naive_times_are_refused_everywhere() -> None:
    with pytest.raises(R.RecordError, match=r"ZoneEntry.timestamp: .*time-zone-aware"):
        entry(timestamp=datetime(2024, 1, 1, 12))
    with pytest.raises(R.RecordError, match=r"DwellSession.enter"):
        R.DwellSession(id="0" * 32, source="camera", source_id="c", timestamp=T, zone="scene",
                       track_id=1, enter=datetime(2024, 1, 1), exit=T, seconds=1.0)
    text = entry().to_json().replace("+01:00", "")
    with pytest.raises(R.RecordError, match="time-zone-aware"):
        R.Record.from_json(text)
    with pytest.raises(R.RecordError, match="ISO 8601"):
        R.Record.from_json(entry().to_json().replace("2024-10-27T01:30:00.000+01:00", "noon"))


def test_times_keep_their_offset_and_microseconds() -> None:
    # 02:30 happens twice in Vienna that night: the offset tells the two instants apart.
    first = datetime(2024, 10, 27, 2, 30, 0, 123456, tzinfo=ZoneInfo("Europe/Vienna"))
    second = first.replace(fold=1)
    texts = []
    for ts, offset in [(first, "+02:00"), (second, "+01:00")]:
        rec = entry(timestamp=ts)
        assert json.loads(rec.to_json())["timestamp"] == f"2024-10-27T02:30:00.123456{offset}"
        back = R.Record.from_json(rec.to_json())
        assert back == rec and back.timestamp.astimezone(UTC) == ts.astimezone(UTC)
        assert rec.timestamp.utcoffset() == back.timestamp.utcoffset() == ts.utcoffset()
        assert back.to_json() == rec.to_json()
        texts.append(rec.to_json())
    b0, b1 = (R.Record.from_json(t).timestamp for t in texts)
    assert b1 - b0 == timedelta(hours=1)
    utc = entry(timestamp=datetime(2024, 3, 1, 8, 0, 0, 250000, tzinfo=UTC))
    assert json.loads(utc.to_json())["timestamp"] == "2024-03-01T08:00:00.250+00:00"


def test_numpy_values_become_plain_python_and_lists_tuples() -> None:
    rec = R.DistancingStart(id="0" * 32, source="camera", source_id="c", timestamp=T,
                            frame=np.int64(9), violating_objects=np.int32(2),
                            violating_pairs=np.uint8(1), track_ids=np.array([4, 5]).tolist(),
                            min_distance_cm=np.float32(120.5))
    assert type(rec.frame) is int and type(rec.min_distance_cm) is float
    assert rec.track_ids == (4, 5)
    sample = R.AreaOccupancySample(id="0" * 32, source="area", source_id="a", timestamp=T,
                                   occupancy=np.int64(3), threshold=0, violation=np.bool_(False),
                                   cameras={"x": np.int64(3)})
    assert sample.violation is False and type(sample.cameras["x"]) is int
    assert json.loads(sample.to_json())["cameras"] == {"x": 3}


def test_nan_infinity_and_wrong_types_are_refused() -> None:
    base: dict[str, Any] = dict(id="0" * 32, source="camera", source_id="c", timestamp=T,
                                track_id=1, first_seen=T, last_seen=T, observed_seconds=1.0,
                                engaged_seconds=0.5)
    R.EngagementSession(**base)
    for key, bad in [("observed_seconds", float("nan")), ("engaged_seconds", np.inf),
                     ("track_id", True), ("track_id", 1.5), ("track_id", "7"),
                     ("observed_seconds", "1.0"), ("first_seen", "2024-10-27T01:30:00+01:00")]:
        with pytest.raises(R.RecordError, match=key):
            R.EngagementSession(**{**base, key: bad})
    text = R.EngagementSession(**base).to_json()
    for raw in ["NaN", "Infinity", "-Infinity"]:
        with pytest.raises(R.RecordError, match="not allowed"):
            R.Record.from_json(text.replace('"engaged_seconds":0.5', f'"engaged_seconds":{raw}'))
    with pytest.raises(R.RecordError, match="one of 'in', 'out'"):
        R.LineCrossing(id="0" * 32, source="camera", source_id="c", timestamp=T, frame=1,
                       line="l", track_id=1, direction="sideways")


def test_records_are_frozen() -> None:
    rec = entry()
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.zone = "other"  # type: ignore[misc]


def test_source_kind_and_abstract_record() -> None:
    with pytest.raises(R.RecordError, match="source"):
        entry(source="area")
    with pytest.raises(R.RecordError, match="source_id"):
        entry(source_id="")
    over = R.OccupancyOver(id="0" * 32, source="area", source_id="a", timestamp=T,
                           occupancy=5, threshold=4)
    assert R.Record.from_json(over.to_json()) == over
    with pytest.raises(R.RecordError, match="abstract"):
        R.Record(id="0" * 32, source="camera", source_id="c", timestamp=T)


# ---------------------------------------------------------------------------------------
# Reading JSON back: refusals
# ---------------------------------------------------------------------------------------


def test_from_json_refuses_unknown_kinds_fields_and_versions() -> None:
    good = json.loads(entry().to_json())

    def read(data: Any) -> R.Record:
        return R.Record.from_json(json.dumps(data))

    with pytest.raises(R.UnknownKindError, match=r"unknown record kind 'teleport'.*zone_entry"):
        read({**good, "kind": "teleport"})
    with pytest.raises(R.RecordError, match=r"unknown field.*colour"):
        read({**good, "colour": "red"})
    with pytest.raises(R.RecordError, match=r"missing field.*track_id"):
        read({k: v for k, v in good.items() if k != "track_id"})
    with pytest.raises(R.RecordError, match="newer"):
        read({**good, "schema": 2})
    with pytest.raises(R.RecordError, match="schema"):
        read({k: v for k, v in good.items() if k != "schema"})
    with pytest.raises(R.RecordError, match="schema"):
        read({**good, "schema": True})
    with pytest.raises(R.RecordError, match="kind"):
        read({k: v for k, v in good.items() if k != "kind"})
    with pytest.raises(R.RecordError, match="JSON object"):
        read([good])
    with pytest.raises(R.RecordError, match="not JSON"):
        R.Record.from_json("{")
    with pytest.raises(R.RecordError, match="not a LineCrossing"):
        R.LineCrossing.from_json(json.dumps(good))
    with pytest.raises(R.UnknownKindError):
        R.record_type("teleport")
    with pytest.raises(TypeError):
        R.RECORD_TYPES["x"] = R.ZoneEntry  # type: ignore[index]


def test_nested_objects_are_checked_when_read() -> None:
    text = doc_example("objects_log")
    data = json.loads(text)
    data["detections"][0]["colour"] = "red"
    with pytest.raises(R.RecordError, match=r"objects_log.detections\[0\]: unknown field"):
        R.Record.from_dict(data)
    data = json.loads(text)
    data["detections"][0]["bbox"] = [1, 2, 3]
    with pytest.raises(R.RecordError, match="a list of 4"):
        R.Record.from_dict(data)
    data = json.loads(text)
    data["violations_indexes"] = [[0, "1"]]
    with pytest.raises(R.RecordError, match="an integer"):
        R.Record.from_dict(data)


def test_stable_json_form() -> None:
    rec = R.Record.from_json(doc_example("dwell_log"))
    text = rec.to_json()
    assert ": " not in text and ", " not in text

    def sorted_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        assert keys == sorted(keys)
        return dict(pairs)

    json.loads(text, object_pairs_hook=sorted_keys)
    # The same values in another insertion order give the same bytes.
    zones = dict(reversed(list(json.loads(text)["zones"].items())))
    assert dataclasses.replace(rec, zones=zones).to_json() == text  # type: ignore[call-arg]


def test_making_and_writing_a_record_is_cheap() -> None:
    ids = R.RecordIds()
    n = 5000
    start = time.perf_counter()
    for i in range(n):
        R.FrameSummary(id=ids(), source="camera", source_id="cam", timestamp=T, frame=i,
                       detected_objects=4, violating_objects=2, violating_pairs=1,
                       occupancy=4, occupancy_threshold=0, environment_score=0.5).to_json()
    per_record_us = (time.perf_counter() - start) / n * 1e6
    print(f"frame_summary made and serialised: {per_record_us:.1f} us per record")
    assert per_record_us < 500  # loose: 2 shared cores; about 25 us when idle


def test_older_schema_is_upgraded_or_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kind at schema 2 reads its schema-1 records through its ``upgrade``, or refuses."""
    old = entry().to_json()
    monkeypatch.setattr(R.ZoneEntry, "SCHEMA", 2)
    with pytest.raises(R.RecordError, match="zone_entry: no upgrade from schema 1 to 2"):
        R.Record.from_json(old)

    def upgrade(cls: type[R.Record], body: dict[str, Any], schema: int) -> dict[str, Any]:
        assert schema == 1
        return {**body, "zone": body["zone"].upper()}

    monkeypatch.setattr(R.ZoneEntry, "upgrade", classmethod(upgrade))
    read = R.Record.from_json(old)
    assert isinstance(read, R.ZoneEntry) and read.zone == "DOOR" and read.schema == 2
    assert json.loads(read.to_json())["schema"] == 2


def test_ids_of_a_recording_follow_from_the_records_place() -> None:
    key = '["cam", {"start_time": null}]'
    first = R.RecordIds.for_recording(key)
    made = [first("line_crossing", 7), first("line_crossing", 7), first("frame_summary", 7),
            first("frame_summary", 8)]
    assert len(set(made)) == 4 and all(R.ID_PATTERN.fullmatch(i) for i in made)
    again = R.RecordIds.for_recording(key)  # a resumed run
    assert again("frame_summary", 7) == made[2]
    assert again("line_crossing", 7) == made[0]
    assert again("line_crossing", 9) not in made  # a crossing one frame later: a new record
    other = R.RecordIds.for_recording('["cam", {"start_time": "2024-01-01"}]')
    assert other("line_crossing", 7) not in made
    assert first() != first()  # without a place: the run's sequence
