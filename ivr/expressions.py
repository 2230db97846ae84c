"""Evaluation of condition expressions (parsed by `config.validate_flows`).

No `eval`: the parsed tree is walked over a plain scope of nested mappings. Evaluation
never raises on data: an unknown name is `none`, a comparison between values that do
not compare (`none < 3`, `"abc" > 2`) is false, `in` on something that is not a list
or string is false. Digits typed by the caller are strings; a comparison between a
number and a string of digits compares them as numbers, so `digits == 3` and
`vars.count >= 10` do what an admin expects.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from config.validate_flows import (
    Compare,
    Expr,
    ExpressionError,
    ListLit,
    Literal,
    Logic,
    Name,
    Not,
    parse_expression,
)

__all__ = ["ExpressionError", "compile_expression", "evaluate", "evaluate_source"]


@lru_cache(maxsize=1024)
def compile_expression(source: str) -> Expr:
    """Parse once per distinct source (flows are parsed again at each reload anyway)."""
    return parse_expression(source)


def evaluate_source(source: str, scope: Mapping[str, Any]) -> Any:
    return evaluate(compile_expression(source), scope)


def evaluate(expr: Expr, scope: Mapping[str, Any]) -> Any:
    if isinstance(expr, Literal):
        return expr.value
    if isinstance(expr, Name):
        value: Any = scope
        for part in expr.parts:
            if isinstance(value, Mapping):
                value = value.get(part)
            else:
                return None
        return value
    if isinstance(expr, ListLit):
        return [evaluate(item, scope) for item in expr.items]
    if isinstance(expr, Not):
        return not truthy(evaluate(expr.operand, scope))
    if isinstance(expr, Logic):
        if expr.op == "and":
            return all(truthy(evaluate(e, scope)) for e in expr.operands)
        return any(truthy(evaluate(e, scope)) for e in expr.operands)
    if isinstance(expr, Compare):
        return _compare(expr.op, evaluate(expr.left, scope), evaluate(expr.right, scope))
    raise TypeError(f"not an expression: {expr!r}")


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value != ""
    return bool(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _equal(a: Any, b: Any) -> bool:
    """Strings compare case-insensitively (tags, languages); a number and a numeric
    string compare as numbers; booleans only equal booleans."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) or isinstance(b, (int, float)):
        na, nb = _number(a), _number(b)
        return na is not None and na == nb
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()
    return bool(a == b)


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "==":
        return _equal(a, b)
    if op == "!=":
        return not _equal(a, b)
    if op in ("in", "not in"):
        if isinstance(b, str):
            inside = isinstance(a, str) and a in b
        elif isinstance(b, (list, tuple, set, frozenset)):
            inside = any(_equal(a, item) for item in b)
        else:
            inside = False
        return inside if op == "in" else not inside
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        x: Any = na
        y: Any = nb
    elif isinstance(a, str) and isinstance(b, str):
        x, y = a, b
    else:
        return False
    return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]
