"""docs/benchmarks.md's demographics section shows exactly the figures of
docs/benchmarks-demographics.json, and real-data floors for the demographics models.

The doc check reads the two committed files only (fast, no model runs).  The accuracy check
runs the models on the labelled faces of ../shared (about 3 s): floors a little below the
figures measured by ``benchmarks/demographics_benchmark.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.demographics_benchmark import (
    END,
    FER2013,
    RAW,
    START,
    UTKFACE,
    evaluate_fer,
    evaluate_utkface,
    load_models,
    render_section,
    replace_section,
    yunet,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def test_section_is_rendered_from_the_json() -> None:
    text = DOC.read_text()
    assert text.count(START) == 1 and text.count(END) == 1
    section = text[text.index(START):text.index(END) + len(END)]
    report = json.loads(RAW.read_text())
    assert section == render_section(report)
    utk, fer = report["utkface"], report["fer2013"]
    assert utk["images"] == 240 and fer["faces"] == 280
    assert sum(b["faces"] for b in utk["by_age"]) == utk["faces_found"]
    assert sum(r["faces"] for r in utk["by_race"]) == utk["faces_found"]
    assert sum(e["faces"] for e in fer["by_emotion"]) == fer["faces"]
    ms = report["ms_per_face"]
    assert ms["stage_total"] == pytest.approx(ms["align"] + ms["age"] + ms["gender"]
                                              + ms["emotion"])


def test_replace_section_keeps_the_rest() -> None:
    other = "# Tracker benchmark\n\ntext\n\n<!-- faces:start -->\nfaces\n<!-- faces:end -->\n"
    new = f"{START}\nnew\n{END}"
    once = replace_section(other, new)
    assert once.startswith(other) and once.endswith(new + "\n")
    twice = replace_section(once.replace("new", "old"), new)
    assert twice == once
    assert replace_section("", new) == new + "\n"


def test_models_on_the_labelled_faces(shared: Path) -> None:
    models = load_models(shared)
    utk = evaluate_utkface(models, yunet(shared), shared / UTKFACE)
    assert utk["faces_found"] >= 235
    assert utk["gender_accuracy"] >= 0.89  # measured 91.2 %
    assert utk["age_mae"] <= 9.0  # measured 8.28 years
    fer = evaluate_fer(models, shared / FER2013)
    assert fer["accuracy"] >= 0.66  # measured 70.4 %
    assert fer["happy_vs_not_accuracy"] >= 0.94  # measured 96.8 %
