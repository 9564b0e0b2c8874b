"""docs/benchmarks.md's faces section shows exactly the figures of docs/benchmarks-faces.json,
and accuracy floors of the face steps on the real labelled faces of ../shared.

The doc checks read the two committed files only.  The floor checks run the steps' code on
all of ``facemask/real_crops`` (300 crops) and ``head_pose/aflw2000`` (210 photos), about 15 s:
a little below what ``benchmarks/faces_benchmark.py`` measured (96.0 % mask accuracy in head
mode, 93.0 % on YuNet crops; head-pose yaw / pitch errors 8.0 / 11.4 degrees on 99 % of
faces).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.faces_benchmark import (
    AFLW,
    DOC,
    END,
    RAW,
    REAL,
    START,
    evaluate_head_pose,
    evaluate_masks,
    load_models,
    render_section,
    replace_section,
)
from libs.post_processors.head_pose import mesh_available


def doc_section() -> str:
    text = DOC.read_text()
    assert text.count(START) == 1 and text.count(END) == 1
    return text[text.index(START) : text.index(END) + len(END)]


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RAW.read_text())
    return data


def test_section_is_rendered_from_the_json(report: dict[str, Any]) -> None:
    assert doc_section() == render_section(report).rstrip("\n")


def test_a_changed_figure_is_caught(report: dict[str, Any]) -> None:
    changed = copy.deepcopy(report)
    changed["mask"][REAL]["modes"]["head"]["accuracy"] -= 0.01
    assert doc_section() != render_section(changed).rstrip("\n")
    changed = copy.deepcopy(report)
    changed["head_pose"]["methods"]["pipeline"]["yaw_mae"] += 0.01
    assert doc_section() != render_section(changed).rstrip("\n")


def test_the_headline_figures_are_in_the_text(report: dict[str, Any]) -> None:
    section = doc_section()
    head = report["mask"][REAL]["modes"]["head"]
    assert f"| 300 | {100 * head['accuracy']:.1f} % |" in section
    pose = report["head_pose"]["methods"]["pipeline"]
    assert f"| {pose['yaw_mae']:.2f} | {pose['pitch_mae']:.2f} |" in section
    assert report["mask"][REAL]["images"] == 300 and report["head_pose"]["images"] == 210


def test_replace_section_appends_once_and_keeps_the_rest() -> None:
    section = f"{START}\nnew\n{END}\n"
    appended = replace_section("# Title\n\ntext\n", section)
    assert appended == f"# Title\n\ntext\n\n{START}\nnew\n{END}\n"
    replaced = replace_section(f"a\n{START}\nold\n{END}\nb\n", section)
    assert replaced == f"a\n{START}\nnew\n{END}\nb\n"
    assert replace_section(replaced, section) == replaced


# ---------------------------------------------------------------------------------------
# Floors on the real sets
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(shared: Path) -> Any:
    return load_models(shared)


def test_mask_accuracy_on_real_crops(models: Any, shared: Path) -> None:
    result = evaluate_masks(models, shared / "data" / "faces" / REAL,
                            modes=("head", "yunet-crop"))
    head, crop = result["modes"]["head"], result["modes"]["yunet-crop"]
    assert head["accuracy"] >= 0.91  # measured 0.960
    assert head["no_face"] <= 0.04  # measured 0.010
    assert crop["accuracy"] >= 0.88  # measured 0.930
    # YuNet misses masked faces more often than bare ones: why the masked-face model backs it
    assert result["yunet_found"]["without_mask"]["found"] >= 0.97  # measured 1.000
    assert result["yunet_found"]["with_mask"]["found"] <= 0.95  # measured 0.887


@pytest.mark.skipif(not mesh_available(), reason="ai-edge-litert is not installed")
def test_head_pose_errors_on_aflw2000(models: Any, shared: Path) -> None:
    result = evaluate_head_pose(models, shared / "data" / "faces" / AFLW)
    step = result["methods"]["pipeline"]
    assert step["accepted"] >= 0.95  # measured 0.990
    assert step["yaw_mae"] <= 11.0  # measured 8.03
    assert step["pitch_mae"] <= 14.5  # measured 11.37
    mesh = result["methods"]["mesh"]
    assert mesh["accepted"] >= 0.80 and mesh["pitch_mae"] <= 11.8  # measured 0.857, 8.77
    marks = result["methods"]["landmarks"]
    assert marks["yaw_mae"] <= 10.7  # measured 7.64
