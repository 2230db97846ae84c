"""JSON from untrusted peers.

`json.loads` accepts `"\\ud800"`: a lone UTF-16 surrogate that no UTF-8 encoder (the
database driver, the websocket writer, the log) can write, so a signed webhook or a
chat frame carrying one used to fail later with a 500. It is refused here instead,
where the caller can still answer 400.
"""

from __future__ import annotations

import json
from typing import Any


def loads_untrusted(raw: str | bytes) -> Any:
    """`json.loads`, raising ValueError for a body holding a lone surrogate."""
    data = json.loads(raw)
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("JSON holds a lone UTF-16 surrogate (a \\ud800-\\udfff escape "
                         "without its pair)") from None
    return data


__all__ = ["loads_untrusted"]
