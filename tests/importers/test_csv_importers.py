"""IP Office Manager and MiVoice Business CSV exports -> Centrale config."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from config.importers import run_import
from config.importers.cli import migrate_main
from config.importers.errors import ImportFailure
from config.loader import load_config


def _migrate(tmp_path: Path, system: str, *sources: Path) -> tuple[int, Path, str]:
    out = tmp_path / "out"
    err = io.StringIO()
    code = migrate_main([system, *map(str, sources), "-o", str(out)], stderr=err,
                        stdout=io.StringIO())
    return code, out, err.getvalue()


def _items(out: Path) -> dict[str, dict]:
    return {i["name"]: i for i in json.loads((out / "migration-report.json").read_text())[
        "items"]}


def test_ipo_export_maps_groups_members_routes_profiles(tmp_path: Path, own_dir: Path) -> None:
    code, out, err = _migrate(tmp_path, "avaya-ipo", own_dir / "avaya_ipo")
    assert code == 3  # the Excel-damaged route, the auto attendant, a wildcard route
    config = load_config(out)
    sales, support, front = (config.queue(q) for q in ("hg_sales", "hg_support", "hg_front"))
    assert (sales.strategy, sales.rona_seconds, sales.max_length) == ("longest_idle", 15, 20)
    assert [(r.after_seconds, r.add_queues) for r in sales.overflow] == [(60, ["hg_support"])]
    assert support.strategy == "best_skill" and front.strategy == "ring_all"
    assert config.agent("u_bram").skills == {"hg_sales": 1, "hg_support": 2}  # sequential
    assert config.agent("u_dana").name == "Jansen, Dana"  # quoted comma
    hours = {s.id: s for s in config.schedules}
    assert hours["tp_office_hours"].hours["mon"] == ["08:30-17:30"]
    assert hours["tp_office_hours"].hours["sat"] == ["10:00-14:00"]
    assert hours["tp_sales_hours"].hours["fri"] == ["09:00-16:00"]
    numbers = {n.number: n.flow for n in config.numbers}
    assert numbers["0201234502"] == "icr_0201234502"  # leading zero restored
    flow = config.flow("icr_0201234500")
    assert (flow.start, flow.nodes["hours"].closed) == ("hours", "out_of_hours")
    assert flow.nodes["destination"].failed_next == "fallback"
    assert flow.nodes["out_of_hours"].type == "voicemail"
    assert config.flow("icr_0201234504").nodes["destination"].target == "201"
    items = _items(out)
    assert items["2.01235E+09 -> Sales"]["outcome"] == "unsupported"
    assert items["02012345XX -> Sales"]["outcome"] == "unsupported"
    assert items["201234502 -> Front"]["outcome"] == "approximated"
    assert items["Warehouse"]["outcome"] == "approximated"  # user in no group
    report = json.loads((out / "migration-report.json").read_text())["items"]
    broken = {i["kind"]: i["outcome"] for i in report if i["name"] == "Broken Profile"}
    assert broken == {"IPO time profile entry": "unsupported",
                      "IPO time profile": "approximated"}
    assert "icr.csv:5: error: incoming number '2.01235E+09' is in scientific notation" in err
    assert "users.csv:1: warning: UTF-8 byte-order mark removed" in err
    assert "column(s) not imported: Hold Music Source, Profile" in err


def test_mivb_export_maps_paths_groups_schedules_dids(tmp_path: Path, own_dir: Path) -> None:
    code, out, err = _migrate(tmp_path, "mitel-mivb", own_dir / "mitel_mivb")
    assert code == 3
    config = load_config(out)
    sales = config.queue("sg1_sales_english")
    assert sales.wrap_up_seconds == 10
    assert [(r.after_seconds, r.add_queues) for r in sales.overflow] == [
        (60, ["sg2_sales_french"]), (180, ["sg3_service_desk"])]
    assert config.queue("sg2_sales_french").strategy == "best_skill"
    assert config.agent("2001").skills == {"sg1_sales_english": 1, "sg2_sales_french": 3,
                                           "sg3_service_desk": 2}
    assert config.agent("2003").name == "\u00c9lodie Martin"
    path = config.flow("acd_path_5001").nodes["queue"]
    assert (path.queue, path.priority, path.max_wait_seconds, path.timeout_next,
            path.failed_next) == ("sg1_sales_english", 55, 600, "interflow", "unavailable")
    assert config.queue("hunt5100").strategy == "best_skill"
    assert config.agent("ext_1101").skills == {"hunt5100": 2}
    assert config.queue("ring5200").strategy == "ring_all"
    numbers = {n.number: n for n in config.numbers}
    assert numbers["0201110002"].flow == "acd_path_5002"  # DID straight to a path
    assert numbers["0201110003"].name == "R\u00e9ception"  # Windows-1252 file
    did = config.flow("did_0201110001")
    assert (did.nodes["hours"].open, did.nodes["hours"].closed) == (
        "acd_path_5001.queue", "night")
    assert config.flow("did_0201110005").nodes["day"].queue == "hunt5100"  # always alt 1
    items = _items(out)
    assert items["5102 VM Ports"]["outcome"] == "unsupported"
    assert items["1: Funday"]["outcome"] == "unsupported"
    assert items["3 Broken Path"]["outcome"] == "unsupported"
    assert "did_service.csv:1: warning: MiVB DID service: columns separated by semicolon" in err
    assert "did_service.csv:3: warning: DID number '201110002' looks like it lost" in err
    assert "did_service.csv:4: warning: not UTF-8" in err


def test_wrong_delimiter_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "users.csv"
    src.write_text("Name:Full Name:Extension\nAnna:Anna de Vries:201\n")
    code, out, err = _migrate(tmp_path, "avaya-ipo", src)
    assert code == 2 and not out.exists()
    assert "users.csv:1: header not recognised: 'Name:Full Name:Extension'" in err
    assert "IPO users (needs 'Name', 'Extension')" in err


def test_title_lines_before_the_header_and_tab_delimiter(tmp_path: Path) -> None:
    src = tmp_path / "hg.txt"
    src.write_text("Hunt Groups export\n\nName\tExtension\tRing Mode\tUser List\n"
                   "Sales\t300\tRotary\t\n")
    result = run_import("avaya-ipo", [src])
    assert result.builder.queues["hg_sales"]["strategy"] == "round_robin"
    assert any("separated by tab" in i.message and i.source.line == 3
               for i in result.report.issues)


def test_row_with_extra_fields_is_flagged_with_its_line(tmp_path: Path) -> None:
    src = tmp_path / "users.csv"
    src.write_text("Name,Full Name,Extension\nAnna,de Vries, Anna,201\nBram,Bram,202\n")
    result = run_import("avaya-ipo", [src])
    [issue] = [i for i in result.report.issues if "field(s)" in i.message]
    assert (issue.source.line, issue.message.split(":")[1].strip()) == (
        2, "4 field(s), header has 3")


@pytest.mark.parametrize("system", ["avaya-ipo", "mitel-mivb"])
def test_empty_csv_is_unreadable(tmp_path: Path, system: str) -> None:
    src = tmp_path / "x.csv"
    src.write_text("\n\n")
    with pytest.raises(ImportFailure, match="empty file"):
        run_import(system, [src])


def test_trailing_dot_zero_from_excel_is_removed(tmp_path: Path) -> None:
    src = tmp_path / "did.csv"
    src.write_text("DID Number,Name,Day Answer Point\n31201110001.0,Main,1234\n")
    result = run_import("mitel-mivb", [src])
    assert "31201110001" in result.builder.numbers
    assert any("trailing '.0'" in i.message and i.source.line == 2 for i in result.report.issues)
