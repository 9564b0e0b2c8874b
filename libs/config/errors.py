from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a configuration file."""

    file: str
    section: str | None
    key: str | None
    message: str
    expected: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.section:
            where += f": [{self.section}]"
        if self.key:
            where += f" {self.key}"
        text = f"{where}: {self.message}"
        if self.expected:
            text += f" (expected {self.expected})"
        return text


class ConfigError(ValueError):
    """The configuration cannot be used; ``problems`` says every reason found."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
