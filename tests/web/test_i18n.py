"""Dutch and English: every message of the pages and scripts is in the catalogue and
translated to Dutch; no template holds text outside `_()`; the language is the user's,
else the browser's, else the site's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from web.i18n import HERE, catalogue, choose_language, po_path

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "web" / "templates"
# Text a template may hold as is: names and codes that are the same in both languages.
ALLOWED_TEXT = {"Centrale", "CSV", "WhatsApp", "·", "–", "(", ")", ":", "/", "|"}


def extracted(tmp_path: Path) -> set[str]:
    pot = tmp_path / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F",
                    str(HERE / "babel.cfg"), "-k", "_", "-k", "t", "--no-location",
                    "-o", str(pot), "."], cwd=REPO, check=True, capture_output=True)
    with pot.open("rb") as fh:
        return {str(m.id) for m in read_po(fh) if m.id}


def test_every_message_in_the_sources_has_a_dutch_translation(tmp_path: Path) -> None:
    wanted = extracted(tmp_path)
    assert len(wanted) > 150  # the extraction found the templates and the scripts
    nl = catalogue("nl").messages
    missing = sorted(m for m in wanted if not nl.get(m))
    assert not missing, f"not translated to Dutch in {po_path('nl')}: {missing}"


def test_the_catalogue_compiles_and_translates() -> None:
    nl = catalogue("nl")
    assert nl.translations.gettext("My tasks") == "Mijn taken"
    assert nl.messages["Offer: {channel}"] == "Aanbod: {channel}"
    assert catalogue("en").translations.gettext("not_ready") == "not ready"
    assert catalogue("fr").language == "en"  # unknown: English as written


def _text_outside_gettext(source: str) -> list[str]:
    source = re.sub(r"\{% block body_class %\}.*?\{% endblock %\}", " ", source)  # CSS
    source = re.sub(r"\{#.*?#\}", " ", source, flags=re.S)
    source = re.sub(r"\{\{.*?\}\}", " ", source, flags=re.S)
    source = re.sub(r"\{%.*?%\}", " ", source, flags=re.S)
    source = re.sub(r"<script\b.*?</script>", " ", source, flags=re.S)
    source = re.sub(r"<!--.*?-->", " ", source, flags=re.S)
    words = []
    for chunk in re.sub(r"<[^>]*>", "\n", source).split("\n"):
        chunk = " ".join(w for w in chunk.split() if w not in ALLOWED_TEXT)
        if re.search(r"[A-Za-z]", chunk):
            words.append(chunk)
    return words


# Every page and partial, the demo's customer simulator and the call controls included
# (the demo site is Dutch: its simulator is in both languages like the rest).
PAGES = sorted(str(p.relative_to(TEMPLATES)) for p in TEMPLATES.rglob("*.html"))


def test_the_pages_include_the_simulator_and_the_call_control_partials() -> None:
    assert {"demo.html", "partials/call_controls.html", "partials/monitor.html"} <= set(PAGES)


@pytest.mark.parametrize("template", PAGES)
def test_templates_hold_no_text_outside_the_catalogue(template: str) -> None:
    found = _text_outside_gettext((TEMPLATES / template).read_text(encoding="utf-8"))
    assert not found, f"{template}: text not in _(): {found}"


def test_attributes_people_read_are_translated() -> None:
    for path in (TEMPLATES / name for name in PAGES):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for attr in re.findall(r'(?:aria-label|placeholder|title)="([^"{]+)"', line):
                assert (not re.search(r"[A-Za-z]{3}", attr) or attr.startswith("https://")
                        or attr in ALLOWED_TEXT), \
                    f"{path.relative_to(TEMPLATES)}:{n}: {attr!r} is not in _()"


@pytest.mark.parametrize(("user", "header", "site", "expected"), [
    ("en", "nl-NL,nl;q=0.9", "nl", "en"),          # the user's own choice wins
    (None, "nl-NL,nl;q=0.9,en;q=0.8", "en", "nl"),  # else the browser's
    (None, "fr-FR,en;q=0.5", "nl", "en"),           # the first language we have
    (None, "de;q=1,nl;q=0.2,en;q=0.1", "en", "nl"),
    (None, "fr", "nl", "nl"),                       # else the site's
    (None, None, None, "en"),
    (None, "nl;q=oops", "en", "en"),                # a bad q-value counts as 0
])
def test_language_choice(user: str | None, header: str | None, site: str | None,
                         expected: str) -> None:
    assert choose_language(user, header, site) == expected
