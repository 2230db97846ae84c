"""Suggestions from resolved cases: a seeded set of Dutch and English cases, learnt from
the bus as they close, and paraphrased questions whose right earlier reply must rank
first; same queue and same language only; the index kept up to date as cases close and
rebuilt from the stored replies at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.assist.seeding import make_assist, open_case, resolved_case, settled

# topic -> (language, what the customer asked, the agent's reply)
RESOLVED = {
    "nl-delivery": ("nl", ["Mijn pakket is nog steeds niet bezorgd, het zou dinsdag komen."],
                    "Excuses voor de vertraging! Uw pakket ligt bij het sorteercentrum en wordt "
                    "morgen bezorgd. U ontvangt vanavond een nieuwe track & trace."),
    "nl-refund": ("nl", ["Ik heb de schoenen teruggestuurd maar mijn geld is niet teruggestort."],
                  "We hebben uw retour ontvangen. De terugbetaling staat klaar en is binnen "
                  "3 werkdagen op uw rekening."),
    "nl-invoice": ("nl", ["Er staat een dubbele afschrijving op mijn factuur van maart."],
                   "Klopt, er is twee keer afgeschreven. We hebben de tweede afschrijving "
                   "gecrediteerd; u ziet het bedrag binnen 5 dagen terug."),
    "nl-address": ("nl", ["Ik ben verhuisd, kan ik mijn adres wijzigen voor de volgende "
                          "levering?"],
                   "Uw nieuwe adres is aangepast. De volgende levering gaat naar het nieuwe "
                   "adres."),
    "nl-password": ("nl", ["Ik kan niet inloggen, mijn wachtwoord werkt niet meer."],
                    "Via 'Wachtwoord vergeten' op de inlogpagina stuurt u zichzelf een "
                    "herstellink. Die is 24 uur geldig."),
    "nl-cancel": ("nl", ["Hoe kan ik mijn abonnement opzeggen?"],
                  "U kunt uw abonnement opzeggen onder Mijn account > Abonnement. De opzegging "
                  "gaat in na de lopende maand."),
    "en-delivery": ("en", ["My parcel still hasn't been delivered, tracking says it is stuck."],
                    "Sorry for the delay! Your parcel is at the depot and will be delivered "
                    "tomorrow. You'll get a new tracking link tonight."),
    "en-refund": ("en", ["I returned the jacket two weeks ago but I haven't been refunded."],
                  "We received your return; the refund has been issued and reaches your account "
                  "within 3 working days."),
    "en-invoice": ("en", ["I was charged twice on my March invoice."],
                   "You're right, the payment was taken twice. We have credited the second "
                   "charge; you'll see it back within 5 days."),
    "en-password": ("en", ["I can't log in, my password doesn't work any more."],
                    "Use 'Forgot password' on the login page to get a reset link. It is valid "
                    "for 24 hours."),
    "en-cancel": ("en", ["How do I cancel my subscription?"],
                  "You can cancel under My account > Subscription. It ends after the current "
                  "month."),
}

# paraphrased question -> the topic whose reply must rank first
PARAPHRASES = {
    ("nl", "Waar blijft mijn bestelling? Het pakketje is nog niet bezorgd"): "nl-delivery",
    ("nl", "Wanneer wordt het geld van mijn retour teruggestort?"): "nl-refund",
    ("nl", "Waarom is er twee keer afgeschreven? Zie factuur"): "nl-invoice",
    ("nl", "Nieuw adres na verhuizing doorgeven"): "nl-address",
    ("nl", "Inloggen lukt niet, wachtwoord vergeten"): "nl-password",
    ("nl", "Ik wil opzeggen, mijn abonnement stoppen"): "nl-cancel",
    ("en", "Where is my parcel? Delivery is late"): "en-delivery",
    ("en", "When will I get refunded for the returned item?"): "en-refund",
    ("en", "Charged twice - please check my invoice"): "en-invoice",
    ("en", "Forgot my password and cannot log in"): "en-password",
    ("en", "Cancelling my subscription please"): "en-cancel",
}


@pytest.fixture
async def seeded(database, tmp_path: Path):  # type: ignore[no-untyped-def]
    assist, cases, bus = make_assist(database, knowledge_dir=tmp_path / "none")
    await assist.start()
    ids = {}
    for i, (topic, (lang, asked, reply)) in enumerate(RESOLVED.items()):
        ids[topic] = await resolved_case(cases, assist, number=f"3161000{i:04d}", asked=asked,
                                         reply=reply, language=lang,
                                         wrap_up=topic.split("-")[1])
    await settled(assist, bus)
    yield assist, cases, bus, ids
    await assist.stop()


async def test_the_right_earlier_reply_ranks_first_for_paraphrased_questions(seeded) -> None:
    assist, cases, _bus, ids = seeded
    for n, ((lang, question), topic) in enumerate(PARAPHRASES.items()):
        case_id = await open_case(cases, number=f"3162000{n:04d}", asked=[question],
                                  language=lang)
        got = await assist.suggest(case_id, queue_id="support")
        assert got.language == lang
        assert got.replies, f"no suggestion for {question!r}"
        first = got.replies[0]
        assert first.case_id == ids[topic], (question, [r.text[:40] for r in got.replies])
        assert first.text == RESOLVED[topic][2]
        assert len(got.replies) <= 3
        # only replies in the customer's language
        expected = {ids[t] for t, (lg, _a, _r) in RESOLVED.items() if lg == lang}
        assert {r.case_id for r in got.replies} <= expected


async def test_the_language_is_detected_when_the_customer_has_none(seeded) -> None:
    assist, cases, _bus, ids = seeded
    case_id = await open_case(cases, number="31630000001",
                              asked=["Hallo, mijn pakket is nog niet bezorgd. Waar blijft het?"])
    got = await assist.suggest(case_id, queue_id="support")
    assert got.language == "nl"
    assert got.replies[0].case_id == ids["nl-delivery"]


async def test_only_replies_of_the_same_queue(seeded) -> None:
    assist, cases, _bus, _ids = seeded
    case_id = await open_case(cases, number="31630000002", asked=["Where is my parcel?"],
                              language="en")
    assert (await assist.suggest(case_id, queue_id="support")).replies
    assert (await assist.suggest(case_id, queue_id="sales")).replies == []


async def test_a_case_closing_is_suggested_from_then_on(seeded) -> None:
    assist, cases, bus, _ids = seeded
    asking = await open_case(cases, number="31630000003",
                             asked=["Can I pay with a gift card at checkout?"], language="en")
    assert (await assist.suggest(asking, queue_id="support")).replies == []
    closed = await resolved_case(cases, assist, number="31630000004",
                                 asked=["Do you take gift cards when I pay?"],
                                 reply="Yes: enter the gift card code at checkout under "
                                       "'Payment'.", language="en")
    await settled(assist, bus)
    got = await assist.suggest(asking, queue_id="support")
    assert [r.case_id for r in got.replies][:1] == [closed]


async def test_a_case_reopened_and_closed_again_is_learnt_once(seeded) -> None:
    assist, cases, bus, ids = seeded
    before = len(assist.replies)
    await cases.close_case(ids["en-cancel"])  # closed again: same replies, nothing new
    assert await assist.learn_case(ids["en-cancel"]) == 0
    await settled(assist, bus)
    assert len(assist.replies) == before


async def test_the_index_is_rebuilt_from_the_stored_replies_at_start(seeded, tmp_path) -> None:
    assist, _cases, _bus, ids = seeded
    fresh, cases, _ = make_assist(assist.db, knowledge_dir=tmp_path / "none")
    await fresh.start()
    try:
        await fresh.ready.wait()
        assert len(fresh.replies) == len(assist.replies) == len(RESOLVED)
        case_id = await open_case(cases, number="31630000005",
                                  asked=["Charged twice on the invoice"], language="en")
        got = await fresh.suggest(case_id, queue_id="support")
        assert got.replies[0].case_id == ids["en-invoice"]
    finally:
        await fresh.stop()


async def test_the_same_canned_answer_is_shown_once_and_never_the_case_itself(seeded) -> None:
    assist, cases, bus, ids = seeded
    for i in range(3):
        await resolved_case(cases, assist, number=f"3164000{i:04d}",
                            asked=["How do I cancel my subscription today?"],
                            reply=RESOLVED["en-cancel"][2], language="en")
    await settled(assist, bus)
    case_id = await open_case(cases, number="31640009999",
                              asked=["cancel subscription"], language="en")
    texts = [r.text for r in (await assist.suggest(case_id, queue_id="support")).replies]
    assert texts.count(RESOLVED["en-cancel"][2]) == 1
    # a resolved case asked about itself (reopened) does not suggest its own reply
    got = await assist.suggest(ids["en-cancel"], queue_id="support")
    assert ids["en-cancel"] not in [r.case_id for r in got.replies]


async def test_wrap_up_code_from_similar_cases_without_a_model(seeded) -> None:
    assist, cases, _bus, _ids = seeded
    case_id = await open_case(cases, number="31650000001",
                              asked=["I returned it, where is my refund?"], language="en")
    assert await assist.suggest_wrap_up(case_id, queue_id="support") == {
        "code": "refund", "by": "similar_cases"}
