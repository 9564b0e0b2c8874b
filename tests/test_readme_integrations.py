"""The README's copy-paste configuration blocks for the integrations are real: each one,
laid over the shipped config-x86.ini, loads; and every integration the registries know has a
block (so a new sink cannot ship without one, and a renamed key breaks this test)."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest

from libs.config import load_config
from libs.loggers import AREA_LOGGERS, OUTPUTS, SOURCE_LOGGERS
from libs.periodic_tasks import PERIODIC_TASKS

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
# Parts that write on this box or compute reports: not integrations.
LOCAL = {"file_system_logger", "video_logger", "metrics"}


def integrations_section() -> str:
    text = README.read_text()
    match = re.search(r"^## Integrations\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, "README.md has no '## Integrations' section"
    return match.group(1)


def ini_blocks() -> list[str]:
    return re.findall(r"```ini\n(.*?)```", integrations_section(), re.S)


def test_every_integration_has_a_block() -> None:
    names = set()
    for registry in (SOURCE_LOGGERS, AREA_LOGGERS, OUTPUTS, PERIODIC_TASKS):
        registry.discover()
        names |= set(registry.names())
    text = "\n".join(ini_blocks())
    missing = sorted(n for n in names - LOCAL if not re.search(rf"^Name = {n}$", text, re.M))
    assert not missing, f"README's Integrations section has no block for {missing}"


@pytest.mark.parametrize("index", range(len(ini_blocks())))
def test_block_loads_over_the_shipped_config(index: int, tmp_path: Path, shared: Path) -> None:
    block = ini_blocks()[index]
    base = configparser.ConfigParser(interpolation=None)
    base.optionxform = str  # type: ignore[assignment,method-assign]
    base.read(REPO / "config-x86.ini")
    base.set("App", "AssetsDirectory", str(shared))
    base.set("App", "DataDirectory", str(tmp_path / "data"))
    extra = configparser.ConfigParser(interpolation=None)
    extra.optionxform = str  # type: ignore[assignment,method-assign]
    extra.read_string(block)
    for section in extra.sections():
        if not base.has_section(section):
            base.add_section(section)
        for key, value in extra.items(section):
            base.set(section, key, value)
    path = tmp_path / "config.ini"
    with open(path, "w") as out:
        base.write(out)
    config = load_config(path, check_files=False)
    for section in extra.sections():
        if not re.match(r"^(Output|SourceLogger|AreaLogger|PeriodicTask)_\d+$", section):
            continue
        name = extra.get(section, "Name")
        loaded = [p for p in (*config.source_loggers, *config.area_loggers, *config.outputs,
                              *config.periodic_tasks) if p.section == section]
        assert loaded and loaded[0].name == name, f"[{section}] {name} did not load"


def doc_blocks() -> dict[str, str]:
    """The ``## Configuration`` INI block of each docs/integrations/*.md page."""
    out = {}
    for doc in sorted((REPO / "docs" / "integrations").glob("*.md")):
        match = re.search(r"^## Configuration\n(.*?)(?=^## |\Z)", doc.read_text(), re.S | re.M)
        assert match, f"{doc.name} has no '## Configuration' section"
        blocks = re.findall(r"```ini\n(.*?)```", match.group(1), re.S)
        assert len(blocks) == 1, f"{doc.name}: one INI block under '## Configuration'"
        out[doc.name] = blocks[0]
    return out


def test_readme_blocks_are_the_documents_blocks() -> None:
    readme = ini_blocks()
    for name, block in doc_blocks().items():
        assert block in readme, f"README's Integrations section lacks {name}'s block as it is"
