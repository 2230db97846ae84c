"""Avaya CM SAT captures -> Centrale config: real captures and realistic fixtures."""

from __future__ import annotations

import json
from pathlib import Path

from config.importers import run_import
from config.importers.cli import migrate_main
from config.importers.report import Outcome
from config.loader import load_config


def _migrate(tmp_path: Path, *sources: Path) -> tuple[int, Path]:
    out = tmp_path / "out"
    code = migrate_main(["avaya-cm", *map(str, sources), "-o", str(out)])
    return code, out


def _items(out: Path) -> list[dict]:
    return json.loads((out / "migration-report.json").read_text())["items"]


def test_real_vector_capture_becomes_one_node_per_step(tmp_path: Path, shared_dir: Path) -> None:
    code, out = _migrate(tmp_path, shared_dir / "avaya_cm_sat_change_vector_5.txt")
    assert code == 0  # route-to digits maps to transfer.target_variable since issue 23
    config = load_config(out)
    flow = config.flow("vector_5")
    assert flow.name == "615-00-00 HG75099"
    assert flow.start == "v5_s01"
    assert sorted(flow.nodes) == [f"v5_s0{i}" for i in range(1, 8)]
    s01 = flow.nodes["v5_s01"]
    assert s01.type == "condition"
    assert s01.branches[0].when == "caller.number in vars.vrt_1"
    assert (s01.branches[0].next, s01.otherwise) == ("v5_s07", "v5_s02")
    s03 = flow.nodes["v5_s03"]
    assert (s03.type, s03.prompts, s03.max_digits) == ("collect", ["ann_71015"], 5)
    assert flow.nodes["v5_s04"].branches[0].when == "digits not in vars.vrt_2"
    assert flow.nodes["v5_s06"].target == "75099"
    assert flow.nodes["v5_s07"].prompts == ["ann_71014"]
    s05 = flow.nodes["v5_s05"]
    assert (s05.type, s05.target_variable, s05.failed_next) == ("transfer", "digits", "v5_s06")
    assert not [i for i in _items(out) if i["outcome"] == "unsupported"]
    [item] = [i for i in _items(out) if i["name"].startswith("vector 5 step 05")]
    assert (item["line"], item["outcome"]) == (15, "approximated")  # 'with coverage y'
    assert item["file"].endswith("avaya_cm_sat_change_vector_5.txt")


def test_real_vdn_and_announcements(tmp_path: Path, shared_dir: Path) -> None:
    code, out = _migrate(tmp_path, shared_dir / "avaya_cm_sat_vdn_vector_trace.txt",
                         shared_dir / "avaya_cm_sat_list_announcement.txt")
    assert code == 0  # route-to digits maps (target_variable); nothing unsupported
    config = load_config(out)
    assert [(n.number, n.flow, n.name) for n in config.numbers] == [("7799", "vector_1", "Test")]
    assert config.flow("vector_1").nodes["v1_s06"].type == "hangup"  # stop, not queued
    report = json.loads((out / "migration-report.json").read_text())
    recordings = {r["prompt"]: r for r in report["recordings"]}
    assert recordings["ann_71015"]["source_name"] == "Privetstvie6150000"
    assert recordings["ann_71015"]["file_name"] == "ann_71015.wav"
    assert recordings["ann_7701"]["used_by"] == ["vector 1 step 03"]  # referenced, not listed
    assert len([r for r in recordings if r.startswith("ann_710")]) == 10
    # the trace and usage listings are state, not config: warned, not "unsupported"
    messages = [i["message"] for i in report["issues"]]
    assert any("list usage extension 71015" in m for m in messages)
    md = (out / "migration-report.md").read_text()
    assert "## Recordings to export" in md and "Privetstvie6150000" in md


def test_cm8_capture_maps_queues_agents_schedules(tmp_path: Path, own_dir: Path) -> None:
    code, out = _migrate(tmp_path, own_dir / "avaya_cm" / "cm8_call_center.txt")
    assert code == 3  # coverage path screen, policy-routing VDN, unsupported steps
    config = load_config(out)
    sales = config.queue("hg1_sales_desk")
    assert (sales.strategy, sales.max_length, sales.wrap_up_seconds,
            sales.service_level_seconds) == ("longest_idle", 25, 15, 20)
    assert sales.skills == {"hg1_sales_desk": 16}
    assert config.queue("hg2_support_tier_2").strategy == "best_skill"
    assert config.queue("hg3_billing_questions").strategy == "least_occupied"  # list only
    assert config.agent("5001").skills == {
        "hg1_sales_desk": 1, "hg2_support_tier_2": 2, "hg3_billing_questions": 4}
    assert config.agent("5002").skills == {"hg2_support_tier_2": 1, "hg1_sales_desk": 3}
    assert config.agent("5003").name == "Chris O'Neill"  # from list agent-loginID
    # ddc members: stations become agents with levels in member order
    assert config.agent("ext_4101").skills == {"hg7_reception": 1}
    assert config.agent("ext_4102").skills == {"hg7_reception": 2}
    hours = {s.id: s for s in config.schedules}["service_hours_1"].hours
    assert hours["mon"] == ["08:00-12:00", "13:00-17:30"] and "sun" not in hours
    cal = config.holiday_calendars[0]
    assert [h.month_day for h in cal.holidays if h.month_day] == [
        "01-01", "04-27", "12-25", "12-26", "12-31", "01-01"]
    # Christmas Eve afternoon (12:00-23:59) is a part day: a dated range per year
    eve = [h for h in cal.holidays if h.start is not None]
    assert [(h.start.month, h.start.day, h.start.hour, h.end.hour) for h in eve] == [
        (12, 24, 12, 0)] * 3 and eve[0].end.day == 25
    numbers = {n.number: n.flow for n in config.numbers}
    assert numbers == {"3100": "vector_10", "3101": "vector_11"}


def test_cm8_vector_jumps_schedules_and_queue_overflow(tmp_path: Path, own_dir: Path) -> None:
    _, out = _migrate(tmp_path, own_dir / "avaya_cm" / "cm8_call_center.txt")
    config = load_config(out)
    v10 = config.flow("vector_10")
    assert v10.start == "v10_s02"  # step 01 is a comment
    s02 = v10.nodes["v10_s02"]  # holiday in table 1
    assert (s02.type, s02.open, s02.closed, s02.holiday) == (
        "schedule", "v10_s03", "v10_s20", "v10_s20")
    s03 = v10.nodes["v10_s03"]  # service-hours not-in table 1
    assert (s03.schedule, s03.open, s03.closed) == ("service_hours_1", "v10_s04", "v10_s19")
    s08 = v10.nodes["v10_s08"]  # queue-to skill 1st: VDN 3100's 1st skill is 1
    assert (s08.queue, s08.priority, s08.failed_next) == ("hg1_sales_desk", 1, "v10_s09")
    assert v10.nodes["v10_s18"].next == "vector_11.v11_s01"
    assert v10.nodes["v10_s20"].target == "+31201234567"
    # staffed-agents is a queue statistic now: the jump keeps step 23 in the flow
    assert v10.nodes["v10_s21"].branches[0].when == (
        "queue_stats.hg1_sales_desk.staffed_agents == 0")
    assert v10.nodes["v10_s21"].branches[0].next == "v10_s23"
    assert "v10_s23" in v10.nodes
    overflow = config.queue("hg1_sales_desk").overflow
    assert [(r.after_seconds, r.add_queues) for r in overflow] == [(20, ["hg2_support_tier_2"])]
    # vector 12 loops wait/announcement: the wait node paces it, the jump is kept
    v12 = config.flow("vector_12")
    assert v12.nodes["v12_s04"].next == "v12_s02"
    assert (v12.nodes["v12_s02"].type, v12.nodes["v12_s02"].seconds) == ("wait", 30)
    items = {i["name"]: i for i in _items(out)}
    assert items["vector 12 step 05: stop"]["outcome"] == "approximated"
    assert "unreachable" in items["vector 12 step 05: stop"]["reason"]
    assert items["vector 10 step 21: goto step 23 if staffed-agents in skill 1 = 0"][
        "outcome"] == "mapped"
    assert items["1"]["kind"] == "coverage path" and items["1"]["outcome"] == "unsupported"
    assert items["vector 10 step 13: check skill 2 pri l if available-agents > 0"][
        "reason"].startswith("condition `queue_stats.hg2_support_tier_2.available_agents > 0`")


def test_every_construct_has_an_outcome_and_a_line(tmp_path: Path, own_dir: Path) -> None:
    result = run_import("avaya-cm", [own_dir / "avaya_cm" / "cm8_call_center.txt"])
    steps = [i for i in result.report.items if i.kind == "vector step"]
    assert len(steps) == 24 + 5 + 6 - 1  # every non-empty step of vectors 10, 12, 11
    assert all(i.source.line for i in result.report.items)
    assert {i.outcome for i in result.report.items} == set(Outcome)


def test_old_release_vt220_log_cp1252(tmp_path: Path, own_dir: Path) -> None:
    code, out = _migrate(tmp_path, own_dir / "avaya_cm" / "cm3_vt220_session.log")
    assert code == 0
    config = load_config(out)
    claims = config.queue("hg5_claims_line")  # drawn with cursor addressing
    assert (claims.name, claims.strategy, claims.max_length, claims.wrap_up_seconds) == (
        "Claims Line", "longest_idle", 12, 10)
    assert config.agent("6001").name == "Eva Mul\u00ebr"
    assert config.agent("6001").skills == {"hg5_claims_line": 1, "hg9": 2}
    assert [(n.number, n.flow) for n in config.numbers] == [("3500", "vector_20")]
    flow = config.flow("vector_20")
    assert flow.nodes["v20_s06"].queue == "hg5_claims_line"
    tod = {s.id: s for s in config.schedules}[flow.nodes["v20_s01"].schedule]
    assert tod.hours["mon"] == ["08:00-24:00"] and tod.hours["fri"] == ["00:00-17:01"]
    assert tod.hours["wed"] == ["00:00-24:00"] and "sat" not in tod.hours
    issues = json.loads((out / "migration-report.json").read_text())["issues"]
    assert any("Windows-1252" in i["message"] for i in issues)


def test_goto_vector_into_a_step_its_own_vector_never_reaches(tmp_path: Path) -> None:
    src = tmp_path / "xv.txt"
    src.write_text(
        "display vector 1\n    Number: 1     Name: Entry\n"
        "01 goto vector 2 @step 3 if unconditionally\n"
        "display vector 2\n    Number: 2     Name: Target\n"
        "01 disconnect after announcement none\n02 stop\n"
        "03 wait-time 5 secs hearing music\n04 announcement 3001\n"
        "05 goto step 3 if unconditionally\n")
    code, out = _migrate(tmp_path, src)
    assert code == 0
    v2 = load_config(out).flow("vector_2")
    assert sorted(v2.nodes) == ["v2_s01", "v2_s03", "v2_s04", "v2_s05"]
    assert v2.nodes["v2_s05"].next == "v2_s03"  # the music loop is kept: the wait paces it
    assert v2.nodes["v2_s03"].type == "wait"
    items = {i["name"]: i for i in _items(out)}
    assert "unreachable" in items["vector 2 step 02: stop"]["reason"]
