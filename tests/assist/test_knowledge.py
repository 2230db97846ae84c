"""The knowledge base: Markdown articles in the config directory, searched like the
resolved cases (same language, the article's queues), a section per match with text an
agent can insert; and check-config naming file:line for an article that is not valid
UTF-8 or Markdown."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from assist.knowledge import KnowledgeBase, plain_text
from centrale.cli import main as centrale_main
from config.knowledge import load_articles

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "demo"


@pytest.fixture
def kb() -> KnowledgeBase:
    articles, issues = load_articles(DEMO / "knowledge")
    assert issues == []
    base = KnowledgeBase("nl")
    assert base.load(articles) >= 6
    return base


def test_the_section_that_answers_ranks_first(kb: KnowledgeBase) -> None:
    hits = kb.search("The tracking says delivered but I have nothing", language="en",
                     queue_id="sales")
    assert hits[0].article_id == "en/delivery"
    assert hits[0].heading == 'Tracking says "delivered" but the customer has nothing'
    assert "neighbours" in hits[0].snippet
    hits = kb.search("Mijn pakket is te laat, de track en trace staat stil", language="nl",
                     queue_id="sales")
    assert (hits[0].article_id, hits[0].heading) == ("nl/bezorging", "Pakket is te laat")


def test_language_and_queues_of_an_article_are_respected(kb: KnowledgeBase) -> None:
    assert all(h.article_id.startswith("nl/") for h in
               kb.search("pakket bezorgd retour terugbetaling", language="nl", queue_id=None))
    # refunds.md is for the support queue only
    assert [h.article_id for h in kb.search("refund after my return", language="en",
                                            queue_id="support")][:1] == ["en/refunds"]
    assert "en/refunds" not in [h.article_id for h in kb.search(
        "refund after my return", language="en", queue_id="sales")]


def test_snippets_are_plain_text() -> None:
    md = "Use **Forgot password** on the [login page](https://shop.example/login).\n```\nx\n```"
    assert plain_text(md) == ("Use Forgot password on the login page "
                              "(https://shop.example/login).\n\nx")


def _config_with(tmp_path: Path, name: str, content: bytes) -> Path:
    config = tmp_path / "config"
    shutil.copytree(DEMO, config)
    (config / "knowledge" / name).write_bytes(content)
    return config


BAD_ARTICLES = {
    "latin1.md": (b"# Retour\n\nGeld terug binnen 3 dagen.\nCaf\xe9 de Paris\n", 4,
                  "not valid UTF-8"),
    "fence.md": (b"# Codes\n\nText\n\n```\nunclosed code\n", 5, "code fence ``` is never closed"),
    "front.md": (b"---\ntitle: Something\nlanguage: fr\n---\n# Something\n\nText\n", 3,
                 "front matter language"),
    "unclosed.md": (b"---\ntitle: Something\n# Something\n\nText\n", 1,
                    "front matter opened with `---` is never closed"),
    "yaml.md": (b"---\ntitle: [unclosed\n---\nText\n", 2, "front matter is not valid YAML"),
    "notitle.md": (b"Just a paragraph without any heading.\n", 1, "article has no title"),
    "control.md": (b"# Title\n\nText with a \x07 bell\n", 3, "control character U+0007"),
    "comment.md": (b"# Title\n\nText\n<!-- never closed\nmore\n", 4,
                   "HTML comment `<!--` is never closed"),
    "empty.md": (b"# Only a title\n", 1, "article has no text"),
    "keys.md": (b"---\ntitle: T\nauthor: me\n---\nText\n", 3, "front matter author"),
}


@pytest.mark.parametrize("name", sorted(BAD_ARTICLES))
def test_check_config_names_file_and_line_of_a_bad_article(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    content, line, message = BAD_ARTICLES[name]
    config = _config_with(tmp_path, name, content)
    assert centrale_main(["check-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{config / 'knowledge' / name}:{line}: " in err, err
    assert message in err, err


def test_a_good_article_passes_check_config(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = _config_with(tmp_path, "good.md", "---\ntitle: Openingstijden\nlanguage: nl\n"
                          "---\nWe zijn open van 9 tot 17 uur, ook op zaterdag. "
                          "Geïnteresseerd? Bel ons.\n".encode())
    assert centrale_main(["check-config", str(config)]) == 0
    assert "ok" in capsys.readouterr().out
    articles, issues = load_articles(config / "knowledge")
    assert issues == []
    assert "good" in {a.id for a in articles}
