"""docs/reliability.md names, for every fault and attack, the test that reproduces it: each
named test file and test function must exist, so the table cannot point at nothing."""

from __future__ import annotations

import re

from tests.conftest import REPO

DOC = REPO / "docs" / "reliability.md"
# `tests/test_x.py::test_a`, followed by more `::test_b` of the same file in one cell.
CELL = re.compile(r"`(tests/[\w/]+\.py)((?:::\w+)?)`((?:, `::\w+`)*)")


def references() -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for line in DOC.read_text().splitlines():
        if not line.startswith("|"):
            continue
        for m in CELL.finditer(line):
            path, first, more = m.group(1), m.group(2), m.group(3)
            names = [first[2:]] if first else [None]
            names += re.findall(r"`::(\w+)`", more)
            out.extend((path, n) for n in names)
    return out


def test_every_row_names_an_existing_test() -> None:
    refs = references()
    assert len(refs) >= 30
    rows = [ln for ln in DOC.read_text().splitlines()
            if ln.startswith("| ") and not ln.startswith("| fault") and
            not ln.startswith("| attack") and not ln.startswith("| ---")]
    for row in rows:
        last = row.rstrip(" |").rsplit("|", 1)[1]
        assert "tests/" in last or "benchmarks/" in last, f"row without a test: {row[:80]}"
    for path, name in refs:
        source = (REPO / path).read_text()
        if name is not None:
            assert re.search(rf"^(async )?def {name}\(", source, re.M), f"{path}::{name}"
