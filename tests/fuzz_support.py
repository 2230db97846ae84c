"""Grammar-based inputs for the HTTP and websocket entry points (issue 18).

Hypothesis draws the examples; async tests then send them to the running app. (The
app and the test share one event loop, so examples are drawn first and replayed:
a failure names the exact input instead of shrinking it.) `CENTRALE_FUZZ_EXAMPLES`
raises the count for longer runs.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

T = TypeVar("T")

EXAMPLES = int(os.environ.get("CENTRALE_FUZZ_EXAMPLES", "80"))
# CI replays the same examples every run (a red build is a regression, not luck);
# a longer run on demand explores new ones.
DERANDOMIZE = "CENTRALE_FUZZ_EXAMPLES" not in os.environ

HOSTILE_TEXT = ["\u00b2", "\u0661\u0662", "9" * 40, "-1", "", " ", '"', "<script>x</script>",
                "\u00e9", "\u202e", "a" * 3000, "\\", "%00", "\ud800", "null", "{}", "[]",
                "\u0000", "../../etc/passwd", "sha256=\u00e9"]


def draw_examples(strategy: st.SearchStrategy[T], count: int = EXAMPLES) -> list[T]:
    """`count` examples of `strategy`, drawn by Hypothesis (generation phase only)."""
    out: list[T] = []

    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=DERANDOMIZE)
    @given(strategy)
    def collect(example: T) -> None:
        out.append(example)

    collect()
    return out


def hostile_text(normal: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[str]:
    base = normal if normal is not None else st.text(max_size=30)
    return st.one_of(base, base, st.sampled_from(HOSTILE_TEXT), st.text(max_size=60))


json_leaf: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70),
    st.floats(allow_nan=False, allow_infinity=False), hostile_text())
any_json: st.SearchStrategy[Any] = st.recursive(
    json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                       st.dictionaries(hostile_text(), inner, max_size=4)),
    max_leaves=12)


def maybe_wrong(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The expected value usually; sometimes any JSON in its place."""
    return st.one_of(value, value, value, any_json)
