"""The knowledge base's search: each section of each article (config/knowledge.py reads
and checks them) is a document, so the desktop offers the paragraph that answers, not
the whole article."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from assist.index import ANY, LexicalIndex
from assist.text import detect_language, tokens
from config.knowledge import Article

_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_EMPHASIS = re.compile(r"(\*\*|__|\*|_|`)(?=\S)(.+?)(?<=\S)\1")
_LIST_ITEM = re.compile(r"^([-*+]|\d{1,3}[.)])\s")
_FENCE_LINE = re.compile(r"^\s*(`{3,}|~{3,}).*$", re.MULTILINE)


@dataclass(frozen=True)
class ArticleMatch:
    article_id: str
    title: str
    heading: str
    snippet: str
    score: float

    def view(self) -> dict[str, object]:
        return {"kind": "article", "article_id": self.article_id, "title": self.title,
                "heading": self.heading, "text": self.snippet, "score": round(self.score, 3)}


def plain_text(markdown: str) -> str:
    """A section as text a customer can read in WhatsApp or an e-mail: links as
    "text (url)", no emphasis markers or code fences."""
    text = _FENCE_LINE.sub("", markdown)
    text = _LINK.sub(lambda m: f"{m.group(1)} ({m.group(2)})", text)
    text = _EMPHASIS.sub(lambda m: m.group(2), text)
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        out: list[str] = []
        for line in lines:  # Markdown's soft line breaks are spaces; list items stay lines
            if out and not _LIST_ITEM.match(line):
                out[-1] += " " + line
            else:
                out.append(line)
        if out:
            paragraphs.append("\n".join(out))
    return "\n\n".join(paragraphs)


class KnowledgeBase:
    def __init__(self, default_language: str = "en") -> None:
        self.default_language = default_language
        self.index = LexicalIndex(filters=("queue", "language"),
                                  stored=("article_id", "title", "heading", "snippet"))
        self.articles: list[Article] = []

    def load(self, articles: Sequence[Article]) -> int:
        """Replace the indexed articles (at start and on a config reload); returns the
        number of sections indexed. Blocking: tantivy commits."""
        self.index.clear()
        sections = 0
        for article in articles:
            for section in article.sections:
                if not section.text:
                    continue
                body = f"{article.title}\n{section.heading}\n{section.text}"
                language = article.language or detect_language(body, self.default_language)
                self.index.add(tokens(body, language),
                               filters={"queue": list(article.queues) or ANY,
                                        "language": language},
                               stored={"article_id": article.id, "title": article.title,
                                       "heading": section.heading,
                                       "snippet": plain_text(section.text)})
                sections += 1
        self.index.commit()
        self.articles = list(articles)
        return sections

    def search(self, question: str, *, language: str, queue_id: str | None,
               limit: int = 3) -> list[ArticleMatch]:
        filters = {"language": language}
        if queue_id:
            filters["queue"] = queue_id
        return [ArticleMatch(h.fields["article_id"], h.fields["title"], h.fields["heading"],
                             h.fields["snippet"], h.score)
                for h in self.index.search(tokens(question, language), filters=filters,
                                           limit=limit)]
