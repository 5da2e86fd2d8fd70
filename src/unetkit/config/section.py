"""What every config section shares: the pydantic base class and the duration parser."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section: unknown fields are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr)?\s*$")
_UNIT_SECONDS = {None: 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hr": 3600.0}


def parse_duration(text: str, name: str | None = None) -> float:
    """'90s' / '10m' / '1.5h' / '300' -> seconds.

    Raises:
        ValueError: not a duration; the message names the option ``name`` (e.g. ``--time``)
            when given.
    """
    match = _DURATION.match(str(text))
    if not match:
        what = f"{name} {text!r}: not a duration" if name else f"cannot read duration {text!r}"
        raise ValueError(f"{what}: use e.g. '90s', '10m' or '2h'")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
