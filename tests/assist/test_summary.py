"""The case summary without a model, from the timeline: a WhatsApp thread, a call with
its IVR path and a wrap-up note; shown only when the case has history; and put on the
timeline once when the contact is transferred."""

from __future__ import annotations

from pathlib import Path

from cases import IdentityRef
from core.events import Event
from tests.assist.seeding import make_assist, settled


async def _case_with_history(cases) -> str:  # type: ignore[no-untyped-def]
    res = await cases.resolve(IdentityRef("whatsapp", "31612345678"), display_name="Eva")
    case = res.case.id
    await cases.add_timeline(case, kind="message", channel="whatsapp", direction="inbound",
                             body="Mijn pakket is nog steeds niet bezorgd. Ordernummer 4411.")
    await cases.add_timeline(case, kind="message", channel="whatsapp", direction="outbound",
                             body="Sorry! Ik zoek het uit. Wij bellen u morgen terug met "
                                  "de nieuwe bezorgdatum.",
                             meta={"agent_id": "anna", "message_id": "m1"})
    await cases.add_timeline(case, kind="wrap_up", channel="whatsapp", direction="internal",
                             body="Wrap-up: follow_up — carrier asked for new date",
                             meta={"code": "follow_up", "notes": "carrier asked for new date",
                                   "agent_id": "anna"})
    # Later the customer calls: the call, its IVR path as ivr.Interpreter writes it.
    await cases.add_timeline(case, kind="call", channel="voice", direction="inbound",
                             body="Incoming call from +31612345678 to 100",
                             meta={"event": "started", "call_id": "c1"})
    await cases.add_timeline(case, kind="ivr_step", channel="voice", direction="inbound",
                             body="Menu language: pressed 1 → main_menu",
                             meta={"node": "language", "type": "menu", "digits": "1"})
    await cases.add_timeline(case, kind="ivr_step", channel="voice", direction="inbound",
                             body="Menu main_menu: pressed 2 → to_support",
                             meta={"node": "main_menu", "type": "menu", "digits": "2"})
    await cases.add_timeline(case, kind="ivr_end", channel="voice", direction="inbound",
                             body="Queued in support", meta={"outcome": "queued"})
    return case


async def test_summary_from_whatsapp_thread_call_with_ivr_path_and_wrap_up_note(
        database, tmp_path: Path) -> None:
    assist, cases, _bus = make_assist(database, knowledge_dir=tmp_path / "none")
    case = await _case_with_history(cases)
    summary = await assist.summary(case)
    assert summary.written_by == "timeline"
    assert summary.has_history
    assert summary.channels == ["whatsapp", "voice"]
    assert set(summary.last_contact) == {"whatsapp", "voice"}
    assert summary.asked == ["Mijn pakket is nog steeds niet bezorgd. Ordernummer 4411."]
    done = " | ".join(summary.done)
    assert "1 agent reply on whatsapp" in done
    assert "1 call (IVR: Menu language: pressed 1 → main_menu; " \
           "Menu main_menu: pressed 2 → to_support)" in done
    assert "Wrap-up follow_up: carrier asked for new date" in done
    assert summary.promises == ["Wij bellen u morgen terug met de nieuwe bezorgdatum."]
    text = summary.text
    assert text.startswith("Channels: whatsapp (last ")
    assert "Customer asked: “Mijn pakket is nog steeds niet bezorgd. Ordernummer 4411.”" in text
    assert "Open promises: “Wij bellen u morgen terug met de nieuwe bezorgdatum.”" in text


async def test_a_first_contact_has_no_history(database, tmp_path: Path) -> None:
    assist, cases, _bus = make_assist(database, knowledge_dir=tmp_path / "none")
    res = await cases.resolve(IdentityRef("whatsapp", "31699999999"))
    await cases.add_timeline(res.case.id, kind="message", channel="whatsapp",
                             direction="inbound", body="Hello?")
    summary = await assist.summary(res.case.id)
    assert not summary.has_history
    assert summary.asked == ["Hello?"]


async def test_a_transfer_puts_the_summary_on_the_timeline_once(database, tmp_path) -> None:
    assist, cases, bus = make_assist(database, knowledge_dir=tmp_path / "none")
    await assist.start()
    try:
        case = await _case_with_history(cases)
        moved = Event("task.moved", {"task_id": "t1", "case_id": case, "queue_id": "sales",
                                     "from_queue_id": "support", "to_queue_id": "sales",
                                     "reason": "transfer", "agent_id": "anna"})
        await bus.publish(moved)
        await bus.publish(moved)  # delivered again: still one note
        await bus.publish(Event("task.moved", {"task_id": "t2", "case_id": case,
                                               "reason": "overflow"}))
        await settled(assist, bus)
        notes = [e for e in await cases.timeline(case) if e.kind == "note"]
        assert len(notes) == 1
        assert notes[0].body.startswith("Hand-over summary\nChannels: whatsapp")
        assert "Wrap-up follow_up" in notes[0].body
        assert notes[0].meta["written_by"] == "timeline"
    finally:
        await assist.stop()


async def test_the_acds_own_transfer_puts_the_summary_on_the_timeline(database,
                                                                      tmp_path) -> None:
    """Through the real AcdEngine: the accept tells assist the case's queue, the transfer
    to another queue puts the hand-over summary on the timeline."""
    from config.schema import CentraleConfig
    from queues.engine import AcdEngine
    from queues.store import InMemoryAcdStore
    from tests.waiting import wait_until

    assist, cases, bus = make_assist(database, knowledge_dir=tmp_path / "none")
    config = CentraleConfig.model_validate({
        "queues": [{"id": "support", "channels": ["whatsapp"]},
                   {"id": "sales", "channels": ["whatsapp"]}],
        "agents": [{"id": "anna", "name": "Anna", "queues": ["support", "sales"]}]})
    acd = AcdEngine(config, assist.clock, bus, InMemoryAcdStore())
    await assist.start()
    try:
        case = await _case_with_history(cases)
        await acd.agent_login("anna", "s1")
        await acd.set_state("anna", "available")
        task = await acd.enqueue(queue_id="support", channel="whatsapp", case_id=case,
                                 customer_id="c")
        offer = next(o for o in acd.offers_for("anna") if o.task_id == task.id)
        await acd.accept(offer.id, "anna")
        await settled(assist, bus)
        assert await assist.queue_of(case) == "support"
        await acd.transfer(task.id, "anna", "sales")
        await settled(assist, bus)

        async def noted() -> bool:
            return any(e.kind == "note" and (e.body or "").startswith("Hand-over summary")
                       for e in await cases.timeline(case))

        await wait_until(noted, timeout=5)
    finally:
        await assist.stop()
        await acd.stop()
