"""The prompts sent to the model: only what the task needs — the customer's latest
messages, the retrieved replies and articles (numbered, so the draft can cite them),
the summary's facts — masked when the site asks for it. Never the customer's name,
identities or the case's other data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

_CITATION = re.compile(r"\[([CK])(\d{1,2})\]")
_LANGUAGE_NAMES = {"en": "English", "nl": "Dutch"}


@dataclass(frozen=True)
class Source:
    """One numbered item of the prompt's context: C1.. for earlier replies, K1.. for
    knowledge-base sections."""

    label: str
    kind: str  # case | article
    ref: str  # case id, or article id#section
    title: str
    text: str


def number_sources(replies: Sequence[tuple[str, str, str]],
                   articles: Sequence[tuple[str, str, str]]) -> list[Source]:
    """(ref, title, text) triples → labelled sources."""
    out = [Source(f"C{i}", "case", ref, title, text)
           for i, (ref, title, text) in enumerate(replies, 1)]
    out += [Source(f"K{i}", "article", ref, title, text)
            for i, (ref, title, text) in enumerate(articles, 1)]
    return out


def draft_messages(question: str, sources: Sequence[Source], language: str,
                   protect: Callable[[str], str]) -> list[dict[str, str]]:
    lang = _LANGUAGE_NAMES.get(language, language)
    system = (
        "You help a contact-center agent answer a customer. Write one short reply the agent "
        f"can send, in {lang}, using only the numbered context below. After each statement "
        "taken from the context, cite its label in square brackets, like [C1] or [K2]. If the "
        "context does not answer the question, say what the agent should check instead. "
        "Do not invent order numbers, dates, amounts or promises.")
    context = "\n\n".join(f"[{s.label}] ({'earlier reply' if s.kind == 'case' else 'article'}: "
                          f"{protect(s.title)})\n{protect(s.text)}" for s in sources)
    user = (f"Context:\n{context or '(none)'}\n\n"
            f"Customer's latest messages:\n{protect(question)}\n\nReply draft:")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def summary_messages(facts: str, protect: Callable[[str], str]) -> list[dict[str, str]]:
    system = ("You write hand-over notes for contact-center agents. From the case facts "
              "below, write at most four short lines: channels used, what the customer "
              "asked, what was done, and any open promises. Facts only, no greetings.")
    return [{"role": "system", "content": system},
            {"role": "user", "content": protect(facts)}]


def wrap_up_messages(question: str, summary: str, codes: Sequence[tuple[str, str]],
                     protect: Callable[[str], str]) -> list[dict[str, str]]:
    listed = "\n".join(f"- {code}: {name}" for code, name in codes)
    system = ("Pick the one wrap-up code that fits this contact-center case. Answer with "
              "the code only, exactly as listed.")
    user = (f"Codes:\n{listed}\n\nCase:\n{protect(summary)}\n\n"
            f"Customer's latest messages:\n{protect(question)}\n\nCode:")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def citations(text: str, sources: Sequence[Source]) -> list[Source]:
    """The sources a draft cites, in the order first cited; labels it invents (a [C9]
    when there were three) are ignored."""
    by_label = {s.label: s for s in sources}
    cited: list[Source] = []
    for kind, number in _CITATION.findall(text):
        source = by_label.get(f"{kind}{int(number)}")
        if source is not None and source not in cited:
            cited.append(source)
    return cited
