"""Graph checks of IVR flows at load, and the condition expression language they use.

`validate_flows(config, prompts_dir=...)` returns every problem it finds as a
`FlowProblem(flow_id, node, message)`; the loader maps flow/node to file:line. Checks:

- the start node and every target exist (`node` in the same flow, `flow.node` across
  flows); menu keys, exit keys and barge-in keys are single DTMF characters;
- unknown queue, schedule and skill ids; a `set` language the flow does not offer;
- unreachable nodes (roots: every flow's start, and `flow.node` targets named by other
  flows or by a queue's exit);
- menus (and other nodes) from which no path ever ends the call (no exit);
- cycles that never wait for the caller (no menu, collect, queue or voicemail node in
  them): they would spin forever;
- condition expressions and `=expr` set values that do not parse or use unknown names;
  collect patterns that are not valid regular expressions;
- prompt files missing for a language the flow offers (only when `prompts_dir` is
  given: `<prompts_dir>/<language>/<key>.wav`).

The expression language lives here (not in `ivr/`) because config may only import core
and the loader must reject a bad expression before a call ever reaches it. The IVR
evaluates the parsed tree (`ivr.expressions`). Grammar, in docs/ivr.md:

    expr    := or_expr
    or_expr := and_expr ("or" and_expr)*
    and_expr:= not_expr ("and" not_expr)*
    not_expr:= "not" not_expr | compare
    compare := operand (("=="|"!="|"<"|"<="|">"|">="|"in"|"not" "in") operand)?
    operand := STRING | NUMBER | true | false | none | NAME("." NAME)* | "(" expr ")"
             | "[" [operand ("," operand)*] "]"
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Union

from config.schema import CentraleConfig
from config.schema.ivr import (
    CollectNode,
    ConditionNode,
    Flow,
    HangupNode,
    MenuNode,
    PlayNode,
    QueueNode,
    ScheduleNode,
    SetNode,
    SurveyNode,
    TransferNode,
    VoicemailNode,
    WaitNode,
)

__all__ = [
    "KNOWN_NAMES",
    "Compare",
    "ExpressionError",
    "FlowProblem",
    "ListLit",
    "Literal",
    "Logic",
    "Name",
    "Not",
    "expression_names",
    "node_prompts",
    "node_targets",
    "parse_expression",
    "validate_flows",
]

# --------------------------------------------------------------------------------------
# Expression language
# --------------------------------------------------------------------------------------


class ExpressionError(ValueError):
    """An expression that does not parse; `position` is the 0-based character offset."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at character {position + 1})")
        self.position = position


@dataclass(frozen=True)
class Literal:
    value: str | int | float | bool | None


@dataclass(frozen=True)
class Name:
    parts: tuple[str, ...]

    @property
    def dotted(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class ListLit:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    operand: Expr


@dataclass(frozen=True)
class Logic:
    op: str  # "and" | "or"
    operands: tuple[Expr, ...]


@dataclass(frozen=True)
class Compare:
    op: str  # == != < <= > >= in "not in"
    left: Expr
    right: Expr


Expr = Union[Literal, Name, ListLit, Not, Logic, Compare]  # noqa: UP007 (runtime alias)

# Names a condition may use. `vars.*` is open: any variable name.
KNOWN_NAMES: dict[str, frozenset[str] | None] = {
    "customer": frozenset({"known", "vip", "tags", "language", "name", "id"}),
    "case": frozenset({"open", "id"}),
    "caller": frozenset({"number", "withheld", "dialled"}),
    "lookup": frozenset({"found", "matches_customer", "customer_id", "kind", "value"}),
    "vars": None,
    "digits": frozenset(),
    "language": frozenset(),
    "queue": frozenset({"result", "id"}),
    # queue_stats.<queue id>.<figure>: live figures of a queue (see QUEUE_STATISTICS)
    "queue_stats": None,
}

# The figures `queue_stats.<queue>.<name>` offers (Avaya vector conditions
# available-agents, staffed-agents, calls-queued, oldest-call-wait, expected-wait).
QUEUE_STATISTICS = frozenset({"available_agents", "staffed_agents", "calls_queued",
                              "oldest_wait", "expected_wait"})

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<number>-?[0-9]+(?:\.[0-9]+)?)
      | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "true", "false", "none", "null"}
_MAX_LENGTH = 1000
_MAX_DEPTH = 50


@dataclass(frozen=True)
class _Tok:
    kind: str  # string number op name kw end
    text: str
    pos: int


def _tokenize(source: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(source):
        if source[pos:].strip() == "":
            break
        m = _TOKEN.match(source, pos)
        if not m or m.end() == pos:
            bad = pos + (len(source[pos:]) - len(source[pos:].lstrip()))
            raise ExpressionError(f"unexpected character {source[bad]!r}", bad)
        kind = m.lastgroup or ""
        text = m.group(kind)
        start = m.start(kind)
        if kind == "name" and text.lower() in _KEYWORDS:
            kind, text = "kw", text.lower()
        out.append(_Tok(kind, text, start))
        pos = m.end()
    out.append(_Tok("end", "", len(source)))
    return out


class _Parser:
    def __init__(self, source: str) -> None:
        self.toks = _tokenize(source)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def accept(self, kind: str, text: str) -> bool:
        if self.tok.kind == kind and self.tok.text == text:
            self.i += 1
            return True
        return False

    def expect(self, kind: str, text: str) -> None:
        if not self.accept(kind, text):
            raise ExpressionError(f"expected {text!r}, found {self._describe()}", self.tok.pos)

    def _describe(self) -> str:
        return "end of expression" if self.tok.kind == "end" else repr(self.tok.text)

    def parse(self) -> Expr:
        expr = self.or_expr()
        if self.tok.kind != "end":
            raise ExpressionError(f"unexpected {self._describe()}", self.tok.pos)
        return expr

    def _nest(self) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise ExpressionError("expression nested too deeply", self.tok.pos)

    def or_expr(self) -> Expr:
        items = [self.and_expr()]
        while self.accept("kw", "or"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Logic("or", tuple(items))

    def and_expr(self) -> Expr:
        items = [self.not_expr()]
        while self.accept("kw", "and"):
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else Logic("and", tuple(items))

    def not_expr(self) -> Expr:
        if self.tok.kind == "kw" and self.tok.text == "not":
            nxt = self.toks[self.i + 1]
            if not (nxt.kind == "kw" and nxt.text == "in"):
                self.take()
                self._nest()
                inner = self.not_expr()
                self.depth -= 1
                return Not(inner)
        return self.compare()

    def compare(self) -> Expr:
        left = self.operand()
        tok = self.tok
        if tok.kind == "op" and tok.text in ("==", "!=", "<", "<=", ">", ">="):
            self.take()
            return Compare(tok.text, left, self.operand())
        if self.accept("kw", "in"):
            return Compare("in", left, self.operand())
        if tok.kind == "kw" and tok.text == "not":
            self.take()
            self.expect("kw", "in")
            return Compare("not in", left, self.operand())
        return left

    def operand(self) -> Expr:
        tok = self.take()
        if tok.kind == "string":
            return Literal(_unquote(tok.text))
        if tok.kind == "number":
            return Literal(float(tok.text) if "." in tok.text else int(tok.text))
        if tok.kind == "kw" and tok.text in ("true", "false"):
            return Literal(tok.text == "true")
        if tok.kind == "kw" and tok.text in ("none", "null"):
            return Literal(None)
        if tok.kind == "name":
            return Name(tuple(tok.text.split(".")))
        if tok.kind == "op" and tok.text == "(":
            self._nest()
            inner = self.or_expr()
            self.depth -= 1
            self.expect("op", ")")
            return inner
        if tok.kind == "op" and tok.text == "[":
            items: list[Expr] = []
            if not self.accept("op", "]"):
                items.append(self.operand())
                while self.accept("op", ","):
                    items.append(self.operand())
                self.expect("op", "]")
            return ListLit(tuple(items))
        found = "end of expression" if tok.kind == "end" else repr(tok.text)
        raise ExpressionError(f"expected a value or name, found {found}", tok.pos)


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def parse_expression(source: str) -> Expr:
    """Parse a condition; raises ExpressionError with the position of the problem."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("empty expression", 0)
    if len(source) > _MAX_LENGTH:
        raise ExpressionError(f"expression longer than {_MAX_LENGTH} characters", 0)
    return _Parser(source).parse()


def expression_names(expr: Expr) -> Iterator[Name]:
    """Every name an expression refers to."""
    if isinstance(expr, Name):
        yield expr
    elif isinstance(expr, ListLit):
        for item in expr.items:
            yield from expression_names(item)
    elif isinstance(expr, Not):
        yield from expression_names(expr.operand)
    elif isinstance(expr, Logic):
        for item in expr.operands:
            yield from expression_names(item)
    elif isinstance(expr, Compare):
        yield from expression_names(expr.left)
        yield from expression_names(expr.right)


def unknown_name_message(name: Name) -> str | None:
    """Why a name is not allowed in a condition, or None when it is known."""
    root, rest = name.parts[0], name.parts[1:]
    if root not in KNOWN_NAMES:
        roots = ", ".join(sorted(KNOWN_NAMES))
        return f"unknown name {name.dotted!r} (names start with one of: {roots})"
    allowed = KNOWN_NAMES[root]
    if root == "queue_stats":
        if len(rest) != 2 or rest[1] not in QUEUE_STATISTICS:
            return (f"{name.dotted!r}: use queue_stats.<queue id>.<figure>, figure one of "
                    f"{', '.join(sorted(QUEUE_STATISTICS))}")
        return None
    if allowed is None:  # vars.<anything>
        if len(rest) != 1:
            return f"{name.dotted!r}: use vars.<variable name>"
        return None
    if not allowed:
        return f"{root!r} has no fields" if rest else None
    if len(rest) != 1 or rest[0] not in allowed:
        return f"unknown name {name.dotted!r} ({root} has: {', '.join(sorted(allowed))})"
    return None


@lru_cache(maxsize=1024)
def statistics_queues(source: str) -> frozenset[str]:
    """The queues whose live figures an expression reads (`queue_stats.<queue>.<x>`);
    cached: the interpreter asks at every condition node it runs."""
    try:
        expr = parse_expression(source)
    except ExpressionError:
        return frozenset()
    return frozenset(n.parts[1] for n in expression_names(expr)
                     if n.parts[0] == "queue_stats" and len(n.parts) == 3)


def check_expression(source: str) -> list[str]:
    """Problems of one expression as messages (empty when it is fine)."""
    try:
        expr = parse_expression(source)
    except ExpressionError as exc:
        return [f"condition {source!r} does not parse: {exc}"]
    out = []
    for name in expression_names(expr):
        msg = unknown_name_message(name)
        if msg:
            out.append(f"condition {source!r}: {msg}")
    return out


# --------------------------------------------------------------------------------------
# Flow graph
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowProblem:
    flow_id: str
    node: str | None
    message: str


_DTMF = re.compile(r"^[0-9*#]$")
_WAITS_FOR_CALLER = (MenuNode, CollectNode, QueueNode, VoicemailNode, WaitNode, SurveyNode)


def node_targets(node: Any) -> list[tuple[str, str]]:
    """(label, target) for every node reference a node holds."""
    out: list[tuple[str, str]] = []
    if isinstance(node, PlayNode):
        if node.next:
            out.append(("next", node.next))
        out += [(f"digit_next[{k}]", v) for k, v in node.digit_next.items()]
    elif isinstance(node, MenuNode):
        out += [(f"options[{k}]", v) for k, v in node.options.items()]
        out.append(("fallback", node.fallback))
    elif isinstance(node, CollectNode):
        out += [("next", node.next), ("fallback", node.fallback)]
    elif isinstance(node, ScheduleNode):
        out += [("open", node.open), ("closed", node.closed)]
        if node.holiday:
            out.append(("holiday", node.holiday))
    elif isinstance(node, ConditionNode):
        out += [(f"branches[{i}]", b.next) for i, b in enumerate(node.branches)]
        out.append(("otherwise", node.otherwise))
    elif isinstance(node, SetNode):
        out.append(("next", node.next))
    elif isinstance(node, QueueNode):
        out += [(f"exit_keys[{k}]", v) for k, v in node.exit_keys.items()]
        if node.timeout_next:
            out.append(("timeout_next", node.timeout_next))
        if node.failed_next:
            out.append(("failed_next", node.failed_next))
    elif isinstance(node, VoicemailNode) and node.next:
        out.append(("next", node.next))
    elif isinstance(node, WaitNode):
        out.append(("next", node.next))
    elif isinstance(node, TransferNode) and node.failed_next:
        out.append(("failed_next", node.failed_next))
    elif isinstance(node, SurveyNode) and node.next:
        out.append(("next", node.next))
    return out


def node_prompts(node: Any) -> list[str]:
    """Every static prompt key a node may play."""
    out: list[str] = list(getattr(node, "prompts", []) or [])
    if isinstance(node, MenuNode):
        out += node.invalid_prompts + node.timeout_prompts
    elif isinstance(node, CollectNode):
        out += node.invalid_prompts
    elif isinstance(node, SurveyNode):
        out += node.retry_prompts + node.thanks_prompts
    return out


def _ends_call(node: Any) -> bool:
    """A node that can end the IVR's part of the call (hang up or hand it over)."""
    if isinstance(node, (HangupNode, TransferNode, QueueNode)):
        return True
    if isinstance(node, (PlayNode, VoicemailNode, SurveyNode)) and node.next is None:
        return True
    return False


def qualify(flow_id: str, ref: str) -> str:
    """`node` -> `flow.node`; `other.node` stays."""
    return ref if "." in ref else f"{flow_id}.{ref}"


def _prompt_exists(prompts_dir: Path, language: str, key: str) -> bool:
    base = prompts_dir / language
    return any((base / f"{key}{ext}").is_file() for ext in (".wav", ".WAV"))


def validate_flows(
    config: CentraleConfig, prompts_dir: Path | str | None = None
) -> list[FlowProblem]:
    """Every problem of every flow; empty when the flows are sound."""
    problems: list[FlowProblem] = []
    flows = {f.id: f for f in config.flows}
    queues = {q.id for q in config.queues}
    schedules = {s.id for s in config.schedules}
    skills = {s.id for s in config.skills}
    graph: dict[str, list[str]] = {}
    exists: dict[tuple[str, str], bool] = {}

    def add(flow: Flow, node: str | None, message: str) -> None:
        problems.append(FlowProblem(flow.id, node, message))

    for flow in config.flows:
        if flow.start not in flow.nodes:
            add(flow, None, f"start node {flow.start!r} does not exist")
        for name, node in flow.nodes.items():
            edges = graph.setdefault(f"{flow.id}.{name}", [])
            for label, ref in node_targets(node):
                target = qualify(flow.id, ref)
                t_flow, t_node = target.split(".", 1)
                if t_flow not in flows:
                    add(flow, name, f"{label}: unknown flow {t_flow!r} in {ref!r}")
                elif t_node not in flows[t_flow].nodes:
                    where = "" if t_flow == flow.id else f" in flow {t_flow!r}"
                    add(flow, name, f"{label}: node {t_node!r} does not exist{where}")
                else:
                    edges.append(target)
            _check_node(flow, name, node, queues, schedules, skills, add)
            if prompts_dir is not None:
                for key in node_prompts(node):
                    for lang in flow.languages:
                        if (lang, key) not in exists:  # one stat per prompt, not per node
                            exists[(lang, key)] = _prompt_exists(Path(prompts_dir), lang, key)
                        if not exists[(lang, key)]:
                            add(flow, name, f"prompt {key!r} missing for language {lang!r} "
                                f"({Path(prompts_dir) / lang / (key + '.wav')})")

    nodes = {f"{f.id}.{n}": node for f in config.flows for n, node in f.nodes.items()}
    roots = {f"{f.id}.{f.start}" for f in config.flows if f.start in f.nodes}
    for q in config.queues:
        if q.exit and q.exit.flow_node and q.exit.flow_node in nodes:
            roots.add(q.exit.flow_node)
    reachable = _reach(graph, roots)
    for key in nodes:
        if key not in reachable:
            flow_id, name = key.split(".", 1)
            problems.append(FlowProblem(flow_id, name, "unreachable: no path from the start "
                                        "node leads here"))

    # nodes from which some path ends the call
    reverse: dict[str, list[str]] = {}
    for src, dsts in graph.items():
        for dst in dsts:
            reverse.setdefault(dst, []).append(src)
    can_end = _reach(reverse, {k for k, n in nodes.items() if _ends_call(n)})
    for key, node in nodes.items():
        if key in reachable and key not in can_end and isinstance(node, MenuNode):
            flow_id, name = key.split(".", 1)
            problems.append(FlowProblem(flow_id, name, "menu has no exit: no option or "
                                        "fallback ever leads out of it"))

    for component in _cycles(graph):
        if not any(isinstance(nodes[k], _WAITS_FOR_CALLER) for k in component):
            first = sorted(component)[0]
            flow_id, name = first.split(".", 1)
            loop = " -> ".join(sorted(component))
            problems.append(FlowProblem(flow_id, name, f"loop never waits for the caller "
                                        f"(no menu, collect, queue or voicemail): {loop}"))
    return problems


def _check_node(
    flow: Flow, name: str, node: Any, queues: set[str], schedules: set[str],
    skills: set[str], add: Any,
) -> None:
    def keys(label: str, mapping: dict[str, str]) -> None:
        for key in mapping:
            if not _DTMF.match(key):
                add(flow, name, f"{label}: key {key!r} is not one DTMF digit (0-9, * or #)")

    if isinstance(node, PlayNode):
        keys("digit_next", node.digit_next)
        if node.digit_next and not node.barge_in:
            add(flow, name, "digit_next needs barge_in: true (digits are ignored otherwise)")
    elif isinstance(node, MenuNode):
        keys("options", node.options)
    elif isinstance(node, CollectNode):
        if node.min_digits > node.max_digits:
            add(flow, name, f"min_digits {node.min_digits} exceeds max_digits {node.max_digits}")
        if node.pattern is not None:
            try:
                re.compile(node.pattern)
            except re.error as exc:
                add(flow, name, f"pattern {node.pattern!r} is not a valid regex: {exc}")
    elif isinstance(node, ScheduleNode):
        if node.schedule not in schedules:
            add(flow, name, f"unknown schedule {node.schedule!r}")
    elif isinstance(node, ConditionNode):
        for branch in node.branches:
            for msg in check_expression(branch.when):
                add(flow, name, msg)
            for queue in statistics_queues(branch.when):
                if queue not in queues:
                    add(flow, name, f"condition {branch.when!r}: unknown queue {queue!r} in "
                        "queue_stats")
    elif isinstance(node, SetNode):
        if node.language is not None and node.language not in flow.languages:
            add(flow, name, f"language {node.language!r} is not one of the flow's languages "
                f"{flow.languages}")
        for var, value in node.variables.items():
            if value.startswith("="):
                for msg in check_expression(value[1:]):
                    add(flow, name, f"variables.{var}: {msg}")
        _check_skills(flow, name, node.skills, skills, add)
    elif isinstance(node, VoicemailNode):
        if node.queue is not None and node.queue not in queues:
            add(flow, name, f"unknown queue {node.queue!r} (the voicemail's callback task)")
    elif isinstance(node, QueueNode):
        if node.queue not in queues:
            add(flow, name, f"unknown queue {node.queue!r}")
        keys("exit_keys", node.exit_keys)
        special = [k for k in (node.callback_key, node.voicemail_key) if k]
        if len(special) != len(set(special)):
            add(flow, name, "callback_key and voicemail_key must differ")
        for key in special:
            if key in node.exit_keys:
                add(flow, name, f"key {key!r} is both a special key and an exit key")
        _check_skills(flow, name, node.skills, skills, add)


def _check_skills(
    flow: Flow, name: str, wanted: dict[str, int], skills: set[str], add: Any
) -> None:
    if not skills:
        return
    for skill in wanted:
        if skill not in skills:
            add(flow, name, f"unknown skill {skill!r}")


def _reach(graph: dict[str, list[str]], roots: set[str]) -> set[str]:
    seen = set(roots)
    stack = list(roots)
    while stack:
        for nxt in graph.get(stack.pop(), []):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def _cycles(graph: dict[str, list[str]]) -> list[set[str]]:
    """Strongly connected components that contain a cycle (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[set[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph.get(root, [])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(graph.get(w, []))))
                    advanced = True
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1 or v in graph.get(v, []):
                    out.append(comp)
    return out
