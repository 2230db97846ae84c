"""JSON from untrusted peers.

`json.loads` accepts `"\\ud800"` (a lone UTF-16 surrogate, which no UTF-8 encoder can
write: the database driver, the websocket writer, the log) and `"\\u0000"` (which
PostgreSQL text refuses). A signed webhook or a chat frame carrying either used to fail
later, in the database, with a 500. Both are refused here instead, where the caller
can still answer 400.
"""

from __future__ import annotations

import json
from typing import Any


def loads_untrusted(raw: str | bytes) -> Any:
    """`json.loads`, raising ValueError for a lone surrogate or a NUL in any string."""
    data = json.loads(raw)
    problem = unstorable_text(data)
    if problem:
        raise ValueError(f"JSON holds {problem}")
    return data


def unstorable_text(value: Any) -> str | None:
    """What makes `value` (strings, lists, dicts, scalars) unstorable, or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "a NUL character"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "a lone UTF-16 surrogate (a \\ud800-\\udfff escape without its pair)"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


__all__ = ["loads_untrusted", "unstorable_text"]
