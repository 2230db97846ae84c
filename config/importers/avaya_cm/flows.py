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
from dataclasses import dataclass
from typing import Any, Protocol

from config.importers.avaya_cm.vector import Condition, Step, Vector
from config.importers.builder import ConfigBuilder
from config.importers.report import MigrationReport, Outcome, SourceRef
from core.numbers import is_ascii_digits

PRIORITY = {"l": 0, "m": 1, "h": 2, "t": 3}
# Avaya vector queue statistics -> Centrale's queue_stats figures (docs/ivr.md)
QUEUE_METRICS = {"available-agents": "available_agents", "staffed-agents": "staffed_agents",
                 "calls-queued": "calls_queued", "oldest-call-wait": "oldest_wait",
                 "expected-wait": "expected_wait"}
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

    def routing_table(self, table: str) -> list[str] | None:
        """Entries of vector routing table `table`, None when not captured."""
        ...

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
        in_source = self._source_reachable(entries or set())
        for name, items in self.pending.items():
            for p in items:
                if name in reachable:
                    self.ctx.report.add("vector step", self._label(p.step), p.outcome,
                                        p.step.source, target=p.target, reason=p.reason)
                elif p.step.number in in_source:
                    # Avaya reaches it, the flow cannot: say through what, never "no step"
                    self.ctx.report.add(
                        "vector step", self._label(p.step), Outcome.UNSUPPORTED,
                        p.step.source, reason="reached in Avaya only when "
                        + in_source[p.step.number] + ", which the Centrale flow cannot "
                        "detect: left out of the flow")
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

    def _source_reachable(self, entries: set[str]) -> dict[int, str]:
        """Steps the source vector can reach, computed on the vector itself (not on the
        flow, where an unsupported step may have lost an edge), each with how it is
        reached when only through a step that can fail: {step: "how"}."""
        numbers = [s.number for s in self.steps]
        by_number = {s.number: s for s in self.steps}

        def first_at_or_after(n: int) -> int | None:
            return next((x for x in numbers if x >= n), None)

        roots = [numbers[0]] if numbers else []
        roots += [_step_of(e) for e in entries]
        how: dict[int, str] = {}
        todo = [(r, "the vector starts") for r in roots]
        while todo:
            n, why = todo.pop()
            if n in how or n not in by_number:
                continue
            how[n] = why
            step = by_number[n]
            cond = step.condition
            unconditional = cond is None or cond.kind == "unconditionally"
            nxt = first_at_or_after(n + 1)
            if step.kind == "goto-step":
                target = first_at_or_after(int(step.args["target"]))
                if target is not None:
                    todo.append((target, f"step {n:02d} jumps to it"))
                if not unconditional and nxt is not None:
                    todo.append((nxt, f"the test of step {n:02d} is false"))
            elif step.kind == "goto-vector":
                if not unconditional and nxt is not None:
                    todo.append((nxt, f"the test of step {n:02d} is false"))
            elif step.kind in ("disconnect", "busy", "stop"):
                continue
            elif nxt is not None:
                fails = {"route-number": "the route-to of step {n:02d} fails",
                         "route-digits": "the route-to of step {n:02d} fails",
                         "messaging": "the messaging step {n:02d} fails",
                         "queue": "step {n:02d} leaves the call unqueued"}
                todo.append((nxt, fails.get(step.kind, "step {n:02d} goes on").format(n=n)))
        return how

    def _goto_target(self, number: int, step: Step) -> str:
        """The node of step `number`; a step on a page missing from the capture gets a
        placeholder node, reported, instead of a silent jump to the next captured step."""
        if number in {s.number for s in self.steps}:
            return node_name(self.v.number, number)
        last = max((s.number for s in self.steps), default=0)
        missing = number in self.v.gaps or (self.v.incomplete is not None and number > last)
        dest = self.at_or_after(number)
        if not missing:
            return dest  # an empty step line: Avaya goes on at the next step too
        name = node_name(self.v.number, number)
        if name not in self.nodes:
            self.nodes[name] = {"type": "set", "variables": {
                "migration_unsupported": f"step {number:02d} missing from the capture"},
                "next": dest}
            self.ctx.report.add(
                "vector step", f"vector {self.v.number} step {number:02d} (not captured)",
                Outcome.UNSUPPORTED, step.source, target=f"flows[{flow_id(self.v.number)}]"
                f".nodes.{name}", reason=f"step {step.number:02d} jumps to it but it is on "
                "a page missing from the capture: a placeholder node goes on at " + dest
                + "; re-capture the vector")
        return name

    def _amend(self, node: str, outcome: Outcome, text: str) -> None:
        for p in self.pending.get(re.sub(r"_(do|if|wait)$", "", node), []):
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
                if kind in ("play", "wait"):
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
        """Centrale refuses loops in which nothing waits (a menu, collect, queue,
        voicemail or wait node); an Avaya `announcement` / `goto step` loop without a
        `wait-time` is legal there (the announcement takes its time). Such a loop's
        backward jump gets a 1 s silent wait node in front of its target: the caller
        stays on the same path, in the same queue, and the loop is paced."""
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
                pace = f"{name}_pace"
                self.nodes[pace] = {"type": "wait", "seconds": 1, "hearing": "silence",
                                    "next": target}
                _set_edge(node, edges[0][0], pace)
                primary = re.sub(r"_(do|if)$", "", name)
                for p in self.pending.get(primary, []):
                    p.outcome = _worst(p.outcome, Outcome.APPROXIMATED)
                    p.reason += (f"; this jump back to {target} made a loop in which "
                                 "nothing waits: a 1 s silent wait paces it")
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
        dest = self._goto_target(int(step.args["target"]), step)
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
        expr, outcome, note = self._expression(cond, step)
        if expr is None:
            # keep the jump in the graph: the target stays in the flow, and the admin
            # replaces vars.<flag> with the real test
            flag = f"{name}_condition"
            self.nodes[name] = {"type": "set",
                                "variables": {"migration_unsupported": f"if {cond.text}"},
                                "next": f"{name}_if"}
            self.nodes[f"{name}_if"] = {"type": "condition",
                                        "branches": [{"when": f"vars.{flag}", "next": dest}],
                                        "otherwise": otherwise}
            return Outcome.UNSUPPORTED, (f"condition {cond.text!r} treated as false (vars."
                                         f"{flag} is never set; replace it with the test): "
                                         f"{note}")
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

    def _expression(self, cond: Condition, step: Step | None = None
                    ) -> tuple[str | None, Outcome, str]:
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
            entries = self.ctx.routing_table(cond.table)
            if entries is not None and not any(c in e for e in entries for c in "?+*"):
                listed = "[" + ", ".join(f'"{e}"' for e in entries) + "]"
                return (f"{subject} {neg} {listed}",
                        Outcome.APPROXIMATED if note else Outcome.MAPPED,
                        f"vector routing table {cond.table} ({len(entries)} entries)"
                        + (f"; {note}" if note else ""))
            if entries is not None:
                return (f"{subject} {neg} vars.vrt_{cond.table}", Outcome.APPROXIMATED,
                        f"vector routing table {cond.table} has wildcard entries ("
                        + ", ".join(entries) + "), which a list cannot express: set "
                        f"vars.vrt_{cond.table} or write the test by hand"
                        + (f"; {note}" if note else ""))
            return (f"{subject} {neg} vars.vrt_{cond.table}", Outcome.APPROXIMATED,
                    f"vector routing table {cond.table} is not in the capture: replace "
                    f"vars.vrt_{cond.table} with the list of its entries, e.g. "
                    f'["0201234567", "0301234567"]' + (f"; {note}" if note else ""))
        if cond.kind == "queue-metric":
            return self._queue_metric(cond, step)
        return None, Outcome.UNSUPPORTED, "condition not understood"

    def _queue_metric(self, cond: Condition, step: Step | None
                      ) -> tuple[str | None, Outcome, str]:
        figure = QUEUE_METRICS.get(cond.subject)
        if figure is None:
            return None, Outcome.UNSUPPORTED, (
                f"{cond.subject} has no equivalent among Centrale's queue figures "
                f"({', '.join(sorted(set(QUEUE_METRICS.values())))})")
        skill = cond.skill or (step.args.get("skill", "") if step is not None else "")
        if not skill:
            return None, Outcome.UNSUPPORTED, f"{cond.text!r} names no skill"
        src = step.source if step is not None else self.v.source
        queue, qnote = self.ctx.queue_for(skill, self.v.number, src)
        notes = [qnote] if qnote else []
        if cond.priority:
            notes.append(f"'pri {cond.priority}' dropped: the figure counts calls of every "
                         "priority")
        if cond.subject in ("oldest-call-wait", "expected-wait"):
            notes.append("seconds, as in Avaya")
        outcome = Outcome.APPROXIMATED if cond.priority or qnote else Outcome.MAPPED
        return f"queue_stats.{queue}.{figure} {cond.op} {cond.value}", outcome, "; ".join(notes)

    def _wait_time(self, step: Step, name: str) -> None:
        n = int(step.args["n"])
        unit = step.args["unit"].lower()
        seconds = n * (60 if unit.startswith("min") else 3600 if unit.startswith("hr") else 1)
        what = step.args["what"].lower()
        nxt = self.after(step)
        if seconds == 0:  # Avaya: start the treatment without waiting
            self.nodes[name] = {"type": "set", "next": nxt}
            self._note(step, Outcome.APPROXIMATED, f"0 s of {what}: nothing to wait; the "
                       "queue node plays its own music on hold")
            return
        if what in ("ringback", "music", "silence", "i-silent"):
            hearing = "silence" if what == "i-silent" else what
            self.nodes[name] = {"type": "wait", "seconds": seconds, "hearing": hearing,
                                "next": nxt}
            self.wait_of[name] = seconds
            self._note(step, Outcome.MAPPED, f"wait node: {seconds} s hearing {hearing}")
            return
        # hearing <announcement> then <music|ringback|silence|continue>
        then = (step.args.get("then") or "silence").lower()
        hearing = then if then in ("ringback", "music", "silence") else "music"
        self.nodes[name] = {"type": "play", "prompts": [self._prompt(step.args["what"], step)],
                            "next": f"{name}_wait"}
        self.nodes[f"{name}_wait"] = {"type": "wait", "seconds": seconds, "hearing": hearing,
                                      "next": nxt}
        self.wait_of[f"{name}_wait"] = seconds
        note = (f"announcement {step.args['what']}, then a wait node of {seconds} s hearing "
                f"{hearing}")
        if then not in ("ringback", "music", "silence"):
            note += f" ('then {then}' keeps the current treatment in Avaya: music here)"
        self._note(step, Outcome.APPROXIMATED, note + "; Avaya counts the announcement "
                   "within the wait, here the wait follows it")

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
        nxt = self.after(step)
        if re.fullmatch(r"[A-Za-z]", number):  # a vector variable holds the number
            node: Node = {"type": "transfer", "target_variable": number, "failed_next": nxt}
            self._guarded(step, name, node, Outcome.MAPPED,
                          f"transfer to the number in vars.{number}; if it is not a number "
                          "or the transfer fails, the next step", f"transfer to vars.{number}")
            return
        if not _TRANSFER_TARGET.match(number):
            self._unsupported(step, f"route-to target {number!r} is not a fixed number")
            return
        node = {"type": "transfer", "target": number, "failed_next": nxt}
        outcome = Outcome.APPROXIMATED if note else Outcome.MAPPED
        self._guarded(step, name, node, outcome, note or f"transfer to {number}; if the "
                      "transfer fails, the next step (as Avaya)", f"transfer to {number}")

    def _route_digits(self, step: Step, name: str) -> None:
        node: Node = {"type": "transfer", "target_variable": "digits",
                      "failed_next": self.after(step)}
        self.nodes[name] = node
        note = ("transfer to the digits collected last (vars.digits); no valid number or a "
                "failed transfer goes on at the next step, as in Avaya")
        if step.args.get("cov"):
            note += f"; 'with coverage {step.args['cov']}' has no equivalent"
        self._note(step, Outcome.APPROXIMATED if step.args.get("cov") else Outcome.MAPPED,
                   note)

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
        node: Node = {"type": "voicemail"}
        ext = step.args.get("ext", "")
        note = ("voicemail node; the mailbox choice (" + (ext or "active") + ") is not "
                "expressible")
        following = next((s for s in self.steps if s.number > step.number), None)
        if following is not None and following.kind in ("disconnect", "stop", "busy"):
            # Avaya ends the call after the message, or reaches this step when messaging
            # fails; either way the caller is hung up: the same as going on to it
            node["next"] = self.after(step)
            note += f"; then step {following.number:02d} ({following.kind})"
        self.nodes[name] = node
        self._note(step, Outcome.APPROXIMATED, note)


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


_WAITING = ("menu", "collect", "queue", "voicemail", "wait")
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
