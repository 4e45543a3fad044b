"""One error type for every bad configuration, naming the offending field."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MBridgeError(Exception):
    """Raised on purpose for bad input (a config field, a file, a checkpoint): the message
    names what is wrong and is the whole story, so entry points show it as one line, not a
    traceback (``mbridge_train.user_errors``). Every package's error type derives from it, except
    mbridge_data's DataError (the torch-free preprocessing path cannot import this package)."""


class ConfigError(MBridgeError, ValueError):
    """A configuration value (or several) is invalid; each line names the field and the rule."""

    def __init__(self, problems: list[tuple[str, str]] | str, field: str | None = None):
        if isinstance(problems, str):
            problems = [(field or "", problems)]
        self.problems = problems
        super().__init__("\n".join(f"{f}: {m}" if f else m for f, m in problems))

    @property
    def fields(self) -> list[str]:
        return [f for f, _ in self.problems]


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
