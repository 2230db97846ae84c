"""The demo's customers: who the simulator offers to play and whom `centrale demo seed`
gives a history. One list, so the people on the simulator are the people with cases."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Persona:
    name: str
    mobile: str  # E.164; the WhatsApp id is the same number without "+"
    language: str | None  # None: Centrale does not know it yet (the IVR asks)
    note: str

    @property
    def wa_id(self) -> str:
        return self.mobile.lstrip("+")


# The walkthrough's customer comes first and is new: no history, no known language, so
# her WhatsApp message opens her first case and her call hears the language menu.
WALKTHROUGH = Persona("Eva de Boer", "+31612345678", None,
                      "new customer: the README walkthrough")
SEEDED = (
    Persona("Joost Bakker", "+31687654321", "nl",
            "closed case by phone last week, an open WhatsApp case"),
    Persona("Sophie Laurent", "+33612345678", "en",
            "English speaker: the IVR speaks English to her"),
    Persona("Daan Smit", "+31611223344", "nl", "two closed cases (a call and a chat)"),
)
PERSONAS = (WALKTHROUGH, *SEEDED)
