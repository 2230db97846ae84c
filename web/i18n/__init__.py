"""Dutch and English for every page: one gettext catalogue per language, for the
templates (jinja2's i18n extension, `{{ _("...") }}`) and the scripts (`t("...")`,
the same messages handed to the page as JSON).

The source of truth is `web/i18n/<lang>/LC_MESSAGES/messages.po` (reviewed text, kept
in git). It is compiled when the app starts, with Babel, in memory: no build step and
no compiled `.mo` file to forget. English is the source language: a message without a
translation is shown as written; the English catalogue only words the few identifiers
used as messages (states such as `not_ready`, channel ids). `messages.pot` is extracted with

    .venv/bin/pybabel extract -F web/i18n/babel.cfg -k _ -k t -o web/i18n/messages.pot web
    .venv/bin/pybabel update -i web/i18n/messages.pot -d web/i18n

and tests/web/test_i18n.py fails when a message has no Dutch translation or a
template holds text outside the catalogue.
"""

from __future__ import annotations

import gettext
import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

HERE = Path(__file__).resolve().parent
LANGUAGES: tuple[str, ...] = ("en", "nl")
DEFAULT = "en"


@dataclass(frozen=True)
class Catalogue:
    language: str
    translations: gettext.NullTranslations
    messages: dict[str, str]  # msgid -> translation, for the scripts


def po_path(language: str) -> Path:
    return HERE / language / "LC_MESSAGES" / "messages.po"


@cache
def catalogue(language: str) -> Catalogue:
    """The compiled catalogue of one language (English: the messages as written)."""
    path = po_path(language)
    if language not in LANGUAGES or not path.exists():
        return Catalogue(DEFAULT, gettext.NullTranslations(), {})
    with path.open("rb") as fh:
        po = read_po(fh, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, po)
    buffer.seek(0)
    messages = {str(m.id): str(m.string) for m in po
                if m.id and isinstance(m.id, str) and m.string and not m.fuzzy}
    return Catalogue(language, gettext.GNUTranslations(buffer), messages)


def choose_language(user_language: str | None, accept_language: str | None,
                    site_default: str | None) -> str:
    """The user's own language if set; else the browser's first language we have
    (Accept-Language, by q-value); else the site's default; else English."""
    if user_language in LANGUAGES:
        return str(user_language)
    for lang in _accepted(accept_language or ""):
        if lang in LANGUAGES:
            return lang
    return site_default if site_default in LANGUAGES else DEFAULT  # type: ignore[return-value]


def _accepted(header: str) -> list[str]:
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if tag and q > 0:
            ranked.append((-q, i, tag.split("-")[0].lower()))
    return [tag for _, _, tag in sorted(ranked)]
