"""docs/benchmarks.md shows exactly the figures of docs/benchmarks.json.

Both files are written by ``benchmarks/tracker_benchmark.py`` and committed; this test reads
them only (no tracker runs), so it is fast and needs none of the peer packages.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
RAW = REPO / "docs" / "benchmarks.json"

COLUMNS = ["Tracker", "Library", "Detections given", "HOTA", "IDF1", "MOTA", "ID switches",
           "ms/frame"]
PEERS = {"SORT", "ByteTrack", "OC-SORT", "BoT-SORT", "C-BIoU", "norfair"}
#: The development set: the two clips with frames and the five MOT15 sequences of
#: ../shared/data/mot (their names only; this test reads no data).
DEV_SET = {"PETS09-S2L1", "TUD-Campus", "ADL-Rundle-8", "ETH-Bahnhof", "ETH-Pedcross2",
           "ETH-Sunnyday", "KITTI-13"}


def parse_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """``{section heading: rows}`` for every ``## heading`` followed by a results table."""
    tables: dict[str, list[dict[str, str]]] = {}
    heading: str | None = None
    header: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            heading, header = line[3:].strip(), None
            continue
        if not line.startswith("|"):
            header = None if not line.strip() else header
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            if cells == COLUMNS and heading is not None:
                header = cells
                tables[heading] = []
            continue
        if all(re.fullmatch(r":?-+:?", c) for c in cells):
            continue
        assert heading is not None
        assert len(cells) == len(header), f"malformed row under {heading!r}: {line!r}"
        tables[heading].append(dict(zip(header, cells, strict=True)))
    return tables


def given_label(result: dict[str, Any]) -> str:
    return "all" if result["min_score"] is None else f">= {result['min_score']:g}"


def mismatches(text: str, report: dict[str, Any]) -> list[str]:
    """Every difference between the Markdown tables and the JSON results."""
    problems: list[str] = []
    tables = parse_tables(text)
    if list(tables) != report["tables"]:
        problems.append(f"tables {list(tables)} != JSON tables {report['tables']}")
    for title in report["tables"]:
        rows = tables.get(title, [])
        results = [r for r in report["results"] if r["table"] == title]
        names = [row["Tracker"] for row in rows]
        if names != [r["tracker"] for r in results]:
            problems.append(f"{title}: trackers {names} != {[r['tracker'] for r in results]}")
            continue
        for row, res in zip(rows, results, strict=True):
            where = f"{title} / {res['tracker']}"
            if row["Library"] != res["library"]:
                problems.append(f"{where}: library {row['Library']!r} != {res['library']!r}")
            if row["Detections given"] != given_label(res):
                problems.append(f"{where}: detections {row['Detections given']!r}")
            for col in ("HOTA", "IDF1", "MOTA"):
                shown = float(row[col])
                if abs(shown - 100.0 * res[col]) > 0.05 + 1e-9:
                    problems.append(f"{where}: {col} {shown} != {100.0 * res[col]:.3f}")
            if int(row["ID switches"]) != res["IDSW"]:
                problems.append(f"{where}: IDSW {row['ID switches']} != {res['IDSW']}")
            if abs(float(row["ms/frame"]) - res["ms_per_frame"]) > 0.0005 + 1e-9:
                problems.append(f"{where}: ms/frame {row['ms/frame']} != "
                                f"{res['ms_per_frame']:.4f}")
    return problems


@pytest.fixture(scope="module")
def doc() -> str:
    assert DOC.exists(), f"{DOC} missing: run benchmarks/tracker_benchmark.py"
    return DOC.read_text()


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    assert RAW.exists(), f"{RAW} missing: run benchmarks/tracker_benchmark.py"
    data: dict[str, Any] = json.loads(RAW.read_text())
    return data


def test_tables_match_json(doc: str, report: dict[str, Any]) -> None:
    problems = mismatches(doc, report)
    assert not problems, "docs/benchmarks.md is out of step with docs/benchmarks.json:\n" + \
        "\n".join(problems)


def test_report_is_complete(doc: str, report: dict[str, Any]) -> None:
    names = {c["name"] for c in report["contenders"]}
    assert names >= PEERS and "IOUTracker" in names, names
    assert {r["sequence"] for r in report["results"]} == DEV_SET
    assert {r["detections"] for r in report["results"]} == {"public", "yolox"}
    for title in report["tables"]:
        got = {r["tracker"] for r in report["results"] if r["table"] == title}
        assert got == names, f"{title}: results for {sorted(got)}, contenders {sorted(names)}"
    for r in report["results"]:
        for key in ("HOTA", "IDF1", "MOTA"):
            assert -10.0 <= r[key] <= 1.0, (r["table"], r["tracker"], key, r[key])
        assert r["ms_per_frame"] > 0


def test_provenance_is_stated(doc: str, report: dict[str, Any]) -> None:
    assert f"`{report['command']}`" in doc
    assert "benchmarks/tracker_benchmark.py" in report["command"]
    assert report["date"] in doc
    machine = report["machine"]
    assert machine["cpu"] and machine["cpu"] in doc
    assert f"{machine['cores']} cores" in doc
    assert f"Python {machine['python']}" in doc
    for package, version in machine["packages"].items():
        assert f"{package} {version}" in doc
    # the score ranges given on YOLOX detections are stated
    assert ">= 0.35" in doc and ">= 0.1" in doc


def test_a_changed_figure_is_caught(doc: str, report: dict[str, Any]) -> None:
    """The comparison can fail: alter one shown figure and one raw value."""
    first = report["results"][0]
    shown = f"{100.0 * first['HOTA']:.1f}"
    row_start = doc.index(f"| {first['tracker']} | {first['library']} |")
    row_end = doc.index("\n", row_start)
    row = doc[row_start:row_end]
    bumped = f"{float(shown) + 1.0:.1f}"
    tampered = doc[:row_start] + row.replace(f"| {shown} |", f"| {bumped} |", 1) + \
        doc[row_end:]
    assert tampered != doc
    assert any("HOTA" in p for p in mismatches(tampered, report))

    raw = json.loads(json.dumps(report))
    raw["results"][-1]["IDSW"] += 1
    assert any("IDSW" in p for p in mismatches(doc, raw))


def summary_table(text: str) -> list[list[str]]:
    """Cells of the rows under the summary heading."""
    from benchmarks.tracker_benchmark import SUMMARY_TITLE

    part = text.split(f"## {SUMMARY_TITLE}", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in part.splitlines() if line.startswith("|")]
    return [r for r in rows[2:]]  # header and rule dropped


def test_summary_is_derived_from_the_results(doc: str, report: dict[str, Any]) -> None:
    """The summary is the mean of the per-sequence results (recomputed here), and the
    document shows it."""
    from benchmarks.tracker_benchmark import summarize, summary_rows

    peers = {c["name"] for c in report["contenders"] if not c["library"].startswith("lookout")}
    again = summarize(report["results"], peers)
    for mine, theirs in zip(again, report["summary"], strict=True):
        for key, value in mine.items():
            if isinstance(value, float):
                assert value == pytest.approx(theirs[key]), (mine["tracker"], key)
            else:
                assert value == theirs[key], (mine["tracker"], key)
    shown = summary_table(doc)
    expected = [[c.strip() for c in row.strip().strip("|").split("|")]
                for row in summary_rows(report["summary"])]
    assert shown == expected
    public = [r for r in report["summary"] if r["detections"] == "public"]
    assert {r["sequences"] for r in public} == {len(DEV_SET)}
    # crossings are counted on the static-camera sequences only, for every tracker
    assert all(r["crossings_truth"] > 0 for r in report["summary"])


def test_crossings_match_one_to_one_in_direction_and_time() -> None:
    from benchmarks.tracker_benchmark import match_crossings
    from libs.evaluation.crossings import Crossing

    truth = [Crossing(10, 1, "in"), Crossing(12, 2, "in"), Crossing(40, 3, "out")]
    got = [Crossing(11, 7, "in"), Crossing(41, 8, "in"), Crossing(60, 9, "out")]
    # 11 takes one of 10/12 (one to one); 41 is the wrong direction; 60 is 20 frames late
    assert match_crossings(truth, got, max_frames=7) == 1
    assert match_crossings(truth, got, max_frames=25) == 2
    assert match_crossings(truth, [*got, Crossing(13, 5, "in")], max_frames=7) == 2


def test_crossing_reach_is_derived_and_shown(doc: str, report: dict[str, Any]) -> None:
    """The crossings no tracker matched are recomputed from the per-tracker matches, lie
    within each tracker's misses, and the document states them."""
    from benchmarks.tracker_benchmark import crossing_reach, reach_sentence

    again = crossing_reach(report["results"], report["crossing_truth"])
    assert again == report["crossings_reach"]
    assert reach_sentence(again) in doc
    for r in again:
        best = max(s["crossings_matched"] for s in report["summary"]
                   if s["detections"] == r["detections"])
        assert best <= r["matched_by_any"] <= r["truth"]
        assert r["truth"] - r["matched_by_any"] == len(r["missed_by_all"])


def test_crossing_reach_takes_the_union_of_the_trackers() -> None:
    from benchmarks.tracker_benchmark import crossing_reach

    truth = [[10, 1, "in"], [20, 2, "out"], [30, 3, "in"]]

    def result(tracker: str, matched: list[int], source: str = "public") -> dict[str, Any]:
        return {"detections": source, "sequence": "S", "tracker": tracker,
                "crossings": {"matched_truth": matched}}

    reach = crossing_reach([result("A", [0]), result("B", [0, 2]),
                            result("C", [], "yolox"),
                            {"detections": "public", "sequence": "M", "tracker": "A",
                             "crossings": None}], {"S": truth})
    assert reach == [
        {"detections": "public", "truth": 3, "matched_by_any": 2,
         "missed_by_all": [{"sequence": "S", "frame": 20, "id": 2, "direction": "out"}]},
        {"detections": "yolox", "truth": 3, "matched_by_any": 0,
         "missed_by_all": [{"sequence": "S", "frame": f, "id": i, "direction": d}
                           for f, i, d in truth]},
    ]
