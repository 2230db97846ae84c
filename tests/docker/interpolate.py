"""Compose-file variable interpolation, as `docker compose` does it before validating.

The compose-spec validator parses the file as written; Compose itself first replaces
`${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`, `${VAR?message}` and
`$VAR`, with `$$` as a literal dollar. Doing the same here lets the test validate the
file exactly as an operator's `docker compose config` would see it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_TOKEN = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class InterpolationError(ValueError):
    """A required variable (`${VAR:?message}`) is missing, or a `$` is malformed."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    def replace(m: re.Match[str]) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("braced") or m.group("named")
        value = env.get(name)
        op = m.group("op")
        arg = m.group("arg") or ""
        unset_or_empty = value is None or value == ""
        if op == ":-":
            return arg if unset_or_empty else str(value)
        if op == "-":
            return arg if value is None else value
        if op == ":?":
            if unset_or_empty:
                raise InterpolationError(f"required variable {name} is missing: {arg}")
            return str(value)
        if op == "?":
            if value is None:
                raise InterpolationError(f"required variable {name} is missing: {arg}")
            return value
        return value or ""

    out = _TOKEN.sub(replace, text)
    stray = re.search(r"\$(?![A-Za-z_{$])", text.replace("$$", ""))
    if stray:
        raise InterpolationError(f"malformed '$' at offset {stray.start()}")
    return out
