"""The knowledge base: Markdown articles in `<config dir>/<assist.knowledge_dir>/`,
reviewed and versioned like the rest of the config, and checked by `check-config` with
`file:line` errors.

An article is one `.md` file (sub-folders allowed), UTF-8, with an optional front
matter block between `---` lines:

    ---
    title: Parcel not delivered
    language: en          # en | nl; default: guessed from the text
    queues: [support]     # only suggested in these queues; default: every queue
    tags: [delivery]
    ---
    # Parcel not delivered
    Text the agent can insert into a reply...

    ## When the tracking shows "delivered"
    ...

The title is the front matter's `title`, else the first heading. Each heading starts a
section; a section is what the desktop offers as a snippet to insert.

What is refused (each names the file and line): bytes that are not UTF-8, control
characters, a front matter block that is not closed or not valid YAML or has an unknown
key, an article without a title or without text, a code fence or an HTML comment that
is never closed.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError

from config.errors import ConfigIssue
from config.schema.base import Strict

MAX_ARTICLE_BYTES = 256 * 1024
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.*?)[ \t#]*$")
_FENCE = re.compile(r"^[ ]{0,3}(`{3,}|~{3,})")
_CONTROL_OK = {"\t", "\n", "\r"}


class ArticleMeta(Strict):
    title: str | None = Field(None, min_length=1, max_length=200)
    language: Literal["en", "nl"] | None = None
    queues: list[str] = []
    tags: list[str] = []


@dataclass(frozen=True)
class Section:
    """A heading and the text under it: what an agent inserts into a reply."""

    heading: str
    text: str
    line: int  # 1-based, where the section starts in the file


@dataclass(frozen=True)
class Article:
    id: str  # the path below the knowledge directory, without `.md`
    path: Path
    title: str
    language: str | None
    queues: tuple[str, ...]
    tags: tuple[str, ...]
    sections: tuple[Section, ...] = field(default_factory=tuple)


def load_articles(directory: Path) -> tuple[list[Article], list[ConfigIssue]]:
    """Every article under `directory` (none when it does not exist) and every problem
    found, so that one `check-config` run reports all of them."""
    articles: list[Article] = []
    issues: list[ConfigIssue] = []
    if not directory.is_dir():
        return articles, issues
    for path in sorted(directory.rglob("*.md")):
        if not path.is_file():
            continue
        article = read_article(path, directory, issues)
        if article is not None:
            articles.append(article)
    return articles, issues


def read_article(path: Path, root: Path, issues: list[ConfigIssue]) -> Article | None:
    before = len(issues)

    def problem(line: int | None, message: str) -> None:
        issues.append(ConfigIssue(path, line, "", message))

    raw = path.read_bytes()
    if len(raw) > MAX_ARTICLE_BYTES:
        problem(None, f"article is {len(raw)} bytes; at most {MAX_ARTICLE_BYTES} are allowed")
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        problem(line, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                      "save the file as UTF-8")
        return None
    text = text.removeprefix("\ufeff")
    lines = text.splitlines()
    for number, content in enumerate(lines, 1):
        bad = next((ch for ch in content if unicodedata.category(ch) == "Cc"
                    and ch not in _CONTROL_OK), None)
        if bad is not None:
            problem(number, f"control character U+{ord(bad):04X} is not allowed in an article")
    meta, body_start = _front_matter(lines, problem)
    title = meta.title if meta else None
    sections = _sections(lines, body_start, problem)
    if title is None:
        title = next((s.heading for s in sections if s.heading), None)
    if len(issues) > before:  # a broken front matter or fence: the rest would be noise
        return None
    if title is None:
        problem(1, "article has no title: add `title:` to the front matter or a `# Heading`")
    if not any(s.text for s in sections):
        problem(body_start + 1 if body_start < len(lines) else 1, "article has no text")
    if len(issues) > before or title is None:
        return None
    article_id = path.relative_to(root).with_suffix("").as_posix()
    return Article(id=article_id, path=path, title=title,
                   language=meta.language if meta else None,
                   queues=tuple(meta.queues) if meta else (),
                   tags=tuple(meta.tags) if meta else (), sections=tuple(sections))


def _front_matter(lines: list[str], problem) -> tuple[ArticleMeta | None, int]:  # type: ignore[no-untyped-def]
    """The front matter's fields and the index of the first body line."""
    if not lines or lines[0].strip() != "---":
        return None, 0
    end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
    if end is None:
        problem(1, "front matter opened with `---` is never closed with a `---` line")
        return None, len(lines)
    try:
        data = yaml.safe_load("\n".join(lines[1:end])) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        problem(line, f"front matter is not valid YAML: {getattr(exc, 'problem', exc)}")
        return None, end + 1
    if not isinstance(data, dict):
        problem(2, "front matter must be a mapping (title:, language:, queues:, tags:)")
        return None, end + 1
    try:
        return ArticleMeta.model_validate(data), end + 1
    except ValidationError as exc:
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else ""
            line = next((i + 1 for i in range(1, end)
                         if lines[i].lstrip().startswith(f"{key}:")), 2)
            problem(line, f"front matter {key}: {err['msg']}")
        return None, end + 1


def _sections(lines: list[str], start: int, problem) -> list[Section]:  # type: ignore[no-untyped-def]
    sections: list[Section] = []
    heading, body, heading_line = "", [], start + 1
    fence: tuple[str, int] | None = None
    comment_line: int | None = None

    def close() -> None:
        text = "\n".join(body).strip()
        if heading or text:
            sections.append(Section(heading, text, heading_line))

    for index in range(start, len(lines)):
        content = lines[index]
        number = index + 1
        fence_match = _FENCE.match(content)
        if fence is not None:
            if fence_match and fence_match.group(1)[0] == fence[0][0] \
                    and len(fence_match.group(1)) >= len(fence[0]):
                fence = None
            body.append(content)
            continue
        if fence_match:
            fence = (fence_match.group(1), number)
            body.append(content)
            continue
        if comment_line is not None:
            if "-->" in content:
                comment_line = None
            continue
        if "<!--" in content and "-->" not in content.split("<!--", 1)[1]:
            comment_line = number
            body.append(content.split("<!--", 1)[0])
            continue
        match = _HEADING.match(content)
        if match:
            close()
            heading, body, heading_line = match.group(2).strip(), [], number
            continue
        body.append(content)
    close()
    if fence is not None:
        problem(fence[1], f"code fence {fence[0]} is never closed")
    if comment_line is not None:
        problem(comment_line, "HTML comment `<!--` is never closed with `-->`")
    return sections
