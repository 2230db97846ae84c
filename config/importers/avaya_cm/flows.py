"""Turn a parsed vector into a Centrale IVR flow, one node per step.

Each step N of vector V becomes node `vV_sNN`; a step continues to the next step's
node, a jump becomes a `condition` node (or a `schedule` node for time-of-day, holiday
and service-hours tests, which Centrale evaluates with one calendar implementation),
and a conditional action (`check skill ... if`, `route-to number ... if`) becomes a test
node plus its action node `vV_sNN_do`. Steps that cannot be expressed become a `set`
node that records the original text in the variable `migration_unsupported` and goes
on to the next step — what Avaya itself does when a step fails — so the flow still
loads and the admin sees the gap in both the YAML and the report.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass, replace
from typing import Any, Protocol

from config.importers.avaya_cm.vector import Condition, Step, Vector
from config.importers.builder import ConfigBuilder
from config.importers.report import MigrationReport, Outcome, SourceRef
from core.numbers import is_ascii_digits

PRIORITY = {"l": 0, "m": 1, "h": 2, "t": 3}
_DAY_INDEX = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_TRANSFER_TARGET = re.compile(r"^\+?[0-9*#]{2,32}$")

Node = dict[str, Any]


class VectorContext(Protocol):
    builder: ConfigBuilder
    report: MigrationReport

    def queue_for(self, skill: str, vector: int, src: SourceRef) -> tuple[str, str | None]:
        """The queue id of skill/split/hunt group `skill` (or 1st/2nd/3rd VDN skill),
        and a note when it had to be guessed."""
        ...

    def holiday_schedule(self, table: str) -> tuple[str, str | None]: ...

    def service_hours_schedule(self, table: str) -> tuple[str, str | None]: ...

    def vector_entry(self, vector: int, step: int) -> str | None:
        """`flow.node` of step >= `step` of another vector, or None if not imported."""
        ...


def flow_id(vector: int) -> str:
    return f"vector_{vector}"


def node_name(vector: int, step: int) -> str:
    return f"v{vector}_s{step:02d}"


@dataclass
class _Pending:
    step: Step
    outcome: Outcome
    target: str
    reason: str


class VectorTranslator:
    def __init__(self, vector: Vector, ctx: VectorContext) -> None:
        self.v = vector
        self.ctx = ctx
        self.b = ctx.builder
        self.nodes: dict[str, Node] = {}
        self.pending: dict[str, list[_Pending]] = {}
        self.steps = [s for s in vector.steps if s.kind != "comment"]
        self.end = f"v{vector.number}_end"
        self.end_used = False
        self.wait_of: dict[str, int] = {}  # node -> seconds a wait-time step plays

    # -- navigation --------------------------------------------------------------------
    def after(self, step: Step) -> str:
        return self.at_or_after(step.number + 1)

    def at_or_after(self, number: int) -> str:
        for s in self.steps:
            if s.number >= number:
                return node_name(self.v.number, s.number)
        self.end_used = True
        return self.end

    # -- result ------------------------------------------------------------------------
    def _build(self) -> None:
        for step in self.v.steps:
            if step.kind == "comment":
                self.ctx.report.add("vector step", self._label(step), Outcome.MAPPED,
                                    step.source, reason="comment; not needed in the flow")
                continue
            self._step(step)
        if self.end_used or not self.steps:
            self.nodes[self.end] = {"type": "hangup"}

    def translate(self, entries: set[str] | None = None) -> dict[str, Any]:
        """The flow; `entries` are nodes other vectors jump to (`goto vector N @step M`),
        kept even when this vector's own start never reaches them."""
        self._build()
        self._in_queue_treatment()
        self._break_idle_loops()
        start = node_name(self.v.number, self.steps[0].number) if self.steps else self.end
        reachable: set[str] = set()
        for root in [start, *sorted(entries or ())]:
            reachable |= _reachable(root, self.nodes)
        for name in list(self.nodes):
            if name not in reachable:
                del self.nodes[name]
        for name, items in self.pending.items():
            for p in items:
                if name in reachable:
                    self.ctx.report.add("vector step", self._label(p.step), p.outcome,
                                        p.step.source, target=p.target, reason=p.reason)
                else:
                    self.ctx.report.add(
                        "vector step", self._label(p.step), Outcome.APPROXIMATED,
                        p.step.source, reason="unreachable in the source vector (no step "
                        "leads to it): left out of the flow")
        flow: dict[str, Any] = {"id": flow_id(self.v.number)}
        if self.v.name:
            flow["name"] = self.v.name
        flow["start"] = start
        flow["nodes"] = self.nodes
        return flow

    def _amend(self, node: str, outcome: Outcome, text: str) -> None:
        for p in self.pending.get(re.sub(r"_do$", "", node), []):
            p.outcome = _worst(p.outcome, outcome)
            if text not in p.reason:
                p.reason += "; " + text

    def _in_queue_treatment(self) -> None:
        """In Avaya a call stays queued while the vector goes on (music, announcements,
        `check skill` to more skills); in Centrale the queue node holds the call and the
        steps after it run only when queueing fails. Walk from each queue node along
        what Avaya would run meanwhile: another queue reached after N seconds of waits
        becomes an overflow rule (after N s also offer to that queue's agents); the
        waits and announcements on the way are flagged as in-queue treatment."""
        for qname, qnode in self.nodes.items():
            if qnode.get("type") != "queue" or "failed_next" not in qnode:
                continue
            best: dict[str, int] = {}
            heap = [(0, qnode["failed_next"])]
            while heap:
                waited, name = heapq.heappop(heap)
                node = self.nodes.get(name)
                if node is None or name in best:
                    continue
                best[name] = waited
                if node.get("type") == "queue":
                    if node["queue"] != qnode["queue"]:
                        self._overflow(qname, qnode["queue"], node["queue"], waited)
                    continue
                kind = node.get("type")
                if kind == "play":
                    self._amend(name, Outcome.APPROXIMATED,
                                "in-queue treatment: Centrale's queue node "
                                "plays music on hold and announces the wait itself; this node "
                                "runs only if queueing failed")
                elif kind == "hangup" and not node.get("prompts"):
                    self._amend(name, Outcome.APPROXIMATED,
                                "after a queue step: Avaya keeps a queued call waiting at stop; "
                                "here the queue node holds the call, so this is reached only "
                                "when queueing failed and hangs up")
                for target in _targets(node):
                    if "." not in target:
                        heapq.heappush(heap, (waited + self.wait_of.get(name, 0), target))

    def _overflow(self, qname: str, first: str, second: str, waited: int) -> None:
        queue = self.b.queues.get(first)
        if queue is None:
            return
        overflow = queue.setdefault("overflow", [])
        for rule in overflow:
            if rule.get("add_queues") == [second]:
                rule["after_seconds"] = min(rule["after_seconds"], waited)
                break
        else:
            overflow.append({"after_seconds": waited, "add_queues": [second]})
        self._amend(qname, Outcome.APPROXIMATED,
                    f"Avaya also queues the call to {second} after {waited} s of waiting: "
                    f"queue {first} got an overflow rule (after {waited} s also offer to "
                    f"{second}'s agents)")

    def _break_idle_loops(self) -> None:
        """Centrale refuses loops in which nothing waits for the caller (only a menu,
        collect, queue or voicemail node waits); Avaya's `wait-time` / `announcement` /
        `goto step` loops are legal there. Such a loop's backward jump is redirected to
        the last queue node before it (the call queues again, as it stayed queued in
        Avaya) or, with no queue, to the end of the flow."""
        for _ in range(50):
            loop = _idle_cycle(self.nodes)
            if not loop:
                return
            for name in sorted(loop, key=_step_of):
                node = self.nodes[name]
                edges = [(k, t) for k, t in _edges(node) if t in loop
                         and _step_of(t) <= _step_of(name)]
                if not edges:
                    continue
                target = edges[0][1]
                queues = [n for n, x in self.nodes.items() if x.get("type") == "queue"
                          and _step_of(n) < _step_of(target)]
                new = max(queues, key=_step_of) if queues else self.end
                if new == self.end:
                    self.end_used = True
                    self.nodes.setdefault(self.end, {"type": "hangup"})
                _set_edge(node, edges[0][0], new)
                how = f"queues again at {new}" if queues else "ends the call"
                primary = re.sub(r"_do$", "", name)
                for p in self.pending.get(primary, []):
                    p.outcome = _worst(p.outcome, Outcome.APPROXIMATED)
                    p.reason += (f"; this jump back to {target} made a loop in which "
                                 f"nothing waits for the caller: it now {how}")
                break
            else:
                return

    def _label(self, step: Step) -> str:
        return f"vector {self.v.number} step {step.number:02d}: {step.text}"

    def _note(self, step: Step, outcome: Outcome, reason: str = "") -> None:
        name = node_name(self.v.number, step.number)
        target = f"flows[{flow_id(self.v.number)}].nodes.{name}"
        self.pending.setdefault(name, []).append(_Pending(step, outcome, target, reason))

    def _unsupported(self, step: Step, reason: str) -> None:
        name = node_name(self.v.number, step.number)
        self.nodes[name] = {"type": "set", "variables": {"migration_unsupported": step.text},
                            "next": self.after(step)}
        self._note(step, Outcome.UNSUPPORTED, reason + "; the flow continues at the next "
                   "step (a set node records the original step)")

    # -- steps -------------------------------------------------------------------------
    def _step(self, step: Step) -> None:
        name = node_name(self.v.number, step.number)
        handler = getattr(self, "_" + step.kind.replace("-", "_"), None)
        if handler is None:
            self._unsupported(step, f"vector command not supported: {step.text!r}")
            return
        handler(step, name)

    def _goto_step(self, step: Step, name: str) -> None:
        dest = self.at_or_after(int(step.args["target"]))
        self._note(step, *self._conditional(step, name, dest))

    def _goto_vector(self, step: Step, name: str) -> None:
        target = int(step.args["vector"])
        dest = self.ctx.vector_entry(target, int(step.args.get("step") or 1))
        if dest is None:
            self._unsupported(step, f"vector {target} is not in the input")
            return
        self._note(step, *self._conditional(step, name, dest))

    def _guarded(self, step: Step, name: str, node: Node, outcome: Outcome, note: str,
                 action: str) -> None:
        """An action with an `if` condition: a test node, then the action node."""
        cond = step.condition
        if cond is None or cond.kind == "unconditionally":
            self.nodes[name] = node
            self._note(step, outcome, note)
            return
        self.nodes[name + "_do"] = node
        c_outcome, c_note = self._conditional(step, name, name + "_do", action=action)
        self._note(step, _worst(outcome, c_outcome), f"{c_note}; {note}")

    def _conditional(
        self, step: Step, name: str, dest: str, action: str = ""
    ) -> tuple[Outcome, str]:
        """Node `name` tests the step's condition: true -> dest, false -> next step."""
        cond = step.condition or Condition("unconditionally", "unconditionally")
        otherwise = self.after(step)
        what = f"then {action}" if action else f"jump to {dest}"
        if cond.kind == "unconditionally":
            self.nodes[name] = {"type": "set", "next": dest}
            return Outcome.MAPPED, f"unconditional: {what}"
        if cond.kind in ("time-of-day", "holiday", "service-hours"):
            schedule, note = self._schedule_for(cond)
            yes_is_open = cond.kind != "holiday"
            if cond.negated:
                yes_is_open = not yes_is_open
            node: Node = {"type": "schedule", "schedule": schedule,
                          "open": dest if yes_is_open else otherwise,
                          "closed": otherwise if yes_is_open else dest}
            node["holiday"] = node["closed"]
            self.nodes[name] = node
            return (Outcome.APPROXIMATED if note else Outcome.MAPPED,
                    f"schedule node on {schedule}: {what}" + (f"; {note}" if note else ""))
        expr, outcome, note = self._expression(cond)
        if expr is None:
            self.nodes[name] = {"type": "set",
                                "variables": {"migration_unsupported": f"if {cond.text}"},
                                "next": otherwise}
            return Outcome.UNSUPPORTED, f"condition {cond.text!r} treated as false: {note}"
        self.nodes[name] = {"type": "condition", "branches": [{"when": expr, "next": dest}],
                            "otherwise": otherwise}
        return outcome, f"condition `{expr}`: {what}" + (f"; {note}" if note else "")

    def _schedule_for(self, cond: Condition) -> tuple[str, str | None]:
        if cond.kind == "holiday":
            return self.ctx.holiday_schedule(cond.table)
        if cond.kind == "service-hours":
            return self.ctx.service_hours_schedule(cond.table)
        assert cond.tod is not None
        return self.b.schedule_from_minutes("time_of_day", _tod_minutes(*cond.tod)), None

    def _expression(self, cond: Condition) -> tuple[str | None, Outcome, str]:
        """The condition in Centrale's expression language (docs/ivr.md), or None."""
        if cond.kind == "compare":
            subject, note = _subject(cond.subject)
            value = f'"{cond.value}"' if cond.op in ("==", "!=") else cond.value
            if cond.op not in ("==", "!=") and not re.fullmatch(r"-?[0-9]+", cond.value):
                return None, Outcome.UNSUPPORTED, f"{cond.value!r} is not a number"
            outcome = Outcome.APPROXIMATED if note else Outcome.MAPPED
            return f"{subject} {cond.op} {value}", outcome, note
        if cond.kind == "table":
            subject, note = _subject(cond.subject)
            neg = "not in" if cond.negated else "in"
            return (f"{subject} {neg} vars.vrt_{cond.table}", Outcome.APPROXIMATED,
                    f"vector routing table {cond.table} is not in the capture: replace "
                    f"vars.vrt_{cond.table} with the list of its entries, e.g. "
                    f'["0201234567", "0301234567"]' + (f"; {note}" if note else ""))
        if cond.kind == "queue-metric":
            return None, Outcome.UNSUPPORTED, (
                f"{cond.subject} is a queue statistic, and Centrale's condition language has "
                "no queue statistics (expression addition needed, e.g. "
                f"queue_stats.<queue>.{cond.subject.replace('-', '_')})")
        return None, Outcome.UNSUPPORTED, "condition not understood"

    def _wait_time(self, step: Step, name: str) -> None:
        n = int(step.args["n"])
        unit = step.args["unit"].lower()
        seconds = n * (60 if unit.startswith("min") else 3600 if unit.startswith("hr") else 1)
        what = step.args["what"].lower()
        prompts = []
        if what in ("ringback", "music", "silence", "i-silent"):
            kind = "silence" if what == "i-silent" else what
            prompts.append(self.b.tone(kind, seconds))
        else:
            prompts.append(self._prompt(step.args["what"], step))
            then = (step.args.get("then") or "silence").lower()
            kind = then if then in ("ringback", "music", "silence") else "music"
            prompts.append(self.b.tone(kind, seconds))
        self.nodes[name] = {"type": "play", "prompts": prompts, "next": self.after(step)}
        self.wait_of[name] = seconds
        self._note(step, Outcome.APPROXIMATED,
                   f"{seconds} s of {what} played as prompt(s) {', '.join(prompts)}")

    def _prompt(self, ann: str, step: Step) -> str:
        prompt = "ann_" + re.sub(r"[^0-9A-Za-z]", "_", ann)
        return self.b.use_prompt(prompt, f"vector {self.v.number} step {step.number:02d}")

    def _announcement(self, step: Step, name: str) -> None:
        ann = step.args["ann"]
        self.nodes[name] = {"type": "play", "prompts": [self._prompt(ann, step)],
                            "next": self.after(step)}
        if not is_ascii_digits(ann):
            self._note(step, Outcome.APPROXIMATED,
                       f"announcement from variable {ann}: plays prompt ann_{ann}")
        else:
            self._note(step, Outcome.MAPPED, f"prompt ann_{ann}")

    def _collect(self, step: Step, name: str) -> None:
        ann = step.args["ann"]
        variable = step.args.get("var") or "none"
        variable = "digits" if variable.lower() == "none" else variable
        outcome, note = Outcome.MAPPED, f"collects up to {step.args['n']} digits into {variable}"
        if ann.lower() == "none":
            prompts = [self.b.tone("silence", 1)]
            outcome, note = Outcome.APPROXIMATED, note + "; no announcement: plays 1 s silence"
        else:
            prompts = [self._prompt(ann, step)]
        nxt = self.after(step)
        self.nodes[name] = {
            "type": "collect", "prompts": prompts, "variable": variable,
            "max_digits": max(1, min(32, int(step.args["n"]))), "retries": 1,
            "next": nxt, "fallback": nxt,
        }
        self._note(step, outcome, note)

    def _collect_ced(self, step: Step, name: str) -> None:
        self._unsupported(step, "network-provided digits (CED/CDPD) are not available in "
                          "Centrale")

    def _queue(self, step: Step, name: str) -> None:
        queue, qnote = self.ctx.queue_for(step.args["skill"], self.v.number, step.source)
        node: Node = {"type": "queue", "queue": queue}
        pri = step.args.get("pri")
        if pri:
            node["priority"] = PRIORITY[pri.lower()]
        node["failed_next"] = self.after(step)
        notes = [f"queue {queue}" + (f", priority {node['priority']}" if pri else "")]
        outcome = Outcome.MAPPED
        cond = step.condition
        if cond is not None and cond.kind == "queue-metric":
            notes.append(f"condition {cond.text!r} dropped (Centrale's conditions have no "
                         "queue statistics): the call is queued unconditionally")
            outcome = Outcome.APPROXIMATED
            step = replace(step, condition=None)
        if qnote:
            notes.append(qnote)
            outcome = Outcome.APPROXIMATED
        if step.args.get("mb", "").lower() == "backup" or step.args["verb"] == "check-backup":
            notes.append("backup split queued like a main one")
            outcome = Outcome.APPROXIMATED
        notes.append("the steps after it run only if queueing fails (Avaya runs them while "
                     "the call waits)")
        self._guarded(step, name, node, outcome, "; ".join(notes), f"queue to {queue}")

    def _route_number(self, step: Step, name: str) -> None:
        number = step.args["number"]
        note = ""
        if number.startswith("~r"):
            number, note = number[2:], "network reroute (~r) dialled as a normal transfer"
        if not _TRANSFER_TARGET.match(number):
            self._unsupported(step, f"route-to target {number!r} is not a fixed number")
            return
        node: Node = {"type": "transfer", "target": number}
        outcome = Outcome.APPROXIMATED if note else Outcome.MAPPED
        self._guarded(step, name, node, outcome, note or f"transfer to {number}",
                      f"transfer to {number}")

    def _route_digits(self, step: Step, name: str) -> None:
        self._unsupported(step, "route-to digits transfers to the digits the caller dialled; "
                          "a transfer node needs a fixed target (schema addition: "
                          "transfer.target_variable)")

    def _disconnect(self, step: Step, name: str) -> None:
        ann = step.args.get("ann")
        node: Node = {"type": "hangup"}
        if ann and ann.lower() != "none":
            node["prompts"] = [self._prompt(ann, step)]
        self.nodes[name] = node
        self._note(step, Outcome.MAPPED,
                   "hang up" + (f" after {node['prompts'][0]}" if "prompts" in node else ""))

    def _busy(self, step: Step, name: str) -> None:
        self.nodes[name] = {"type": "hangup", "prompts": [self.b.tone("busy", 10)]}
        self._note(step, Outcome.APPROXIMATED,
                   "busy tone played as prompt busy_10s, then hang up (no SIP 486)")

    def _stop(self, step: Step, name: str) -> None:
        self.nodes[name] = {"type": "hangup"}
        self._note(step, Outcome.MAPPED, "hang up (the call is not queued)")

    def _messaging(self, step: Step, name: str) -> None:
        self.nodes[name] = {"type": "voicemail"}
        ext = step.args.get("ext", "")
        self._note(step, Outcome.APPROXIMATED,
                   "voicemail node; the mailbox choice (" + (ext or "active") + ") is not "
                   "expressible")


def _worst(a: Outcome, b: Outcome) -> Outcome:
    order = [Outcome.MAPPED, Outcome.APPROXIMATED, Outcome.UNSUPPORTED]
    return max(a, b, key=order.index)


def _subject(subject: str) -> tuple[str, str]:
    """An Avaya vector operand as a Centrale name, and a note when it is not the same."""
    if subject == "ani":
        return "caller.number", ""
    if subject == "digits":
        return "digits", ""
    if subject == "ii-digits":
        return "vars.ii_digits", "ii-digits (originating line info) is not provided by " \
            "Centrale: vars.ii_digits is empty unless a set node fills it"
    return f"vars.{subject}", ""


def _tod_minutes(d1: str, t1: str, d2: str, t2: str) -> list[tuple[int, int]]:
    """`time-of-day is d1 t1 to d2 t2` as week-minute intervals (0 = Monday 00:00)."""
    def minutes(t: str) -> int:
        h, m = t.split(":")
        return int(h) * 60 + int(m)

    s, e = minutes(t1), minutes(t2) + 1  # Avaya's end minute is inclusive
    if d1 == "all" or d2 == "all":
        out = []
        for day in range(7):
            start = day * 1440 + s
            end = day * 1440 + e if e > s else (day + 1) * 1440 + e
            out.append((start, end))
        return out
    return [(_DAY_INDEX[d1] * 1440 + s, _DAY_INDEX[d2] * 1440 + e)]


_WAITING = ("menu", "collect", "queue", "voicemail")
_EDGE_KEYS = ("next", "open", "closed", "holiday", "otherwise", "fallback", "failed_next",
              "timeout_next")


def _step_of(name: str) -> int:
    m = re.search(r"_s([0-9]+)", name)
    return int(m.group(1)) if m else 1000


def _edges(node: Node) -> list[tuple[Any, str]]:
    out: list[tuple[Any, str]] = [(k, node[k]) for k in _EDGE_KEYS
                                  if isinstance(node.get(k), str)]
    out += [(("branches", i), b["next"]) for i, b in enumerate(node.get("branches", []))]
    return out


def _set_edge(node: Node, key: Any, target: str) -> None:
    if isinstance(key, tuple):
        node["branches"][key[1]]["next"] = target
    else:
        node[key] = target


def _idle_cycle(nodes: dict[str, Node]) -> set[str] | None:
    """A strongly connected set of nodes (a loop) with no node that waits for input."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for _, w in _edges(nodes[v]):
            if w not in nodes:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            self_loop = any(t == v for _, t in _edges(nodes[v]))
            if (len(comp) > 1 or self_loop) and not any(
                    nodes[n].get("type") in _WAITING for n in comp):
                found.append(comp)

    for v in nodes:
        if v not in index:
            visit(v)
    return found[0] if found else None


def _reachable(start: str, nodes: dict[str, Node]) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        todo.extend(_targets(nodes[name]))
    return seen


def _targets(node: Node) -> list[str]:
    out = []
    for key in ("next", "open", "closed", "holiday", "otherwise", "fallback", "failed_next",
                "timeout_next"):
        value = node.get(key)
        if isinstance(value, str):
            out.append(value)
    for branch in node.get("branches", []):
        out.append(branch["next"])
    for key in ("options", "digit_next", "exit_keys"):
        out.extend(node.get(key, {}).values())
    return out
