"""The lexical index: BM25 over pre-tokenised text, with exact-match filters, held in
memory by tantivy (see docs/assist.md for why tantivy and not bm25s).

Documents are added to a buffer (microseconds: what a closing case pays) and become
searchable at the next `commit()`, which the service runs off the event loop every
`commit_interval_seconds` while there is something to commit. Only one thread commits
at a time; searches run concurrently with a commit on the last committed state.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import tantivy

ANY = "*"  # a filter value that matches every query value (an article for every queue)


@dataclass(frozen=True)
class Hit:
    score: float
    fields: dict[str, str]


class LexicalIndex:
    """One tantivy index in RAM. `filters` are exact-match keyword fields (queue,
    language); `stored` are the fields a hit hands back."""

    def __init__(self, *, filters: Sequence[str], stored: Sequence[str],
                 heap_bytes: int = 20_000_000) -> None:
        builder = tantivy.SchemaBuilder()
        builder.add_text_field("terms", stored=False, tokenizer_name="whitespace",
                               index_option="freq")
        for name in filters:
            builder.add_text_field(name, stored=False, tokenizer_name="raw",
                                   index_option="basic")
        for name in stored:
            builder.add_text_field(name, stored=True, tokenizer_name="raw",
                                   index_option="basic")
        self._schema = builder.build()
        self._filters = tuple(filters)
        self._stored = tuple(stored)
        self._index = tantivy.Index(self._schema)
        # One indexing thread: documents are small and commits are frequent, and more
        # threads only make more segments to merge.
        self._writer = self._index.writer(heap_size=heap_bytes, num_threads=1)
        self._buffer: list[tantivy.Document] = []
        self._unsaved = 0  # handed to the writer, not committed yet
        self._buffer_lock = threading.Lock()
        self._commit_lock = threading.Lock()
        self._searcher = self._index.searcher()

    # ---------------------------------------------------------------- writing

    def add(self, terms: Iterable[str], *, filters: dict[str, str | Sequence[str]],
            stored: dict[str, str]) -> None:
        """Buffer one document; searchable after the next `commit()`."""
        doc = tantivy.Document()
        doc.add_text("terms", " ".join(terms))
        for name in self._filters:
            value = filters.get(name, ANY)
            for one in [value] if isinstance(value, str) else value:
                doc.add_text(name, one)
        for name in self._stored:
            doc.add_text(name, stored.get(name, ""))
        with self._buffer_lock:
            self._buffer.append(doc)

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def flush(self) -> int:
        """Hand the buffered documents to the index writer (not yet searchable), so a
        large rebuild does not hold every document twice. Blocking: a worker thread."""
        with self._commit_lock:
            return self._flush()

    def _flush(self) -> int:
        with self._buffer_lock:
            docs, self._buffer = self._buffer, []
        for doc in docs:
            self._writer.add_document(doc)
        self._unsaved += len(docs)
        return len(docs)

    def commit(self) -> int:
        """Write the buffered documents and make them searchable; returns how many.
        Blocking (a tantivy commit takes milliseconds): call it in a worker thread."""
        with self._commit_lock:
            self._flush()
            written, self._unsaved = self._unsaved, 0
            if not written:
                return 0
            self._writer.commit()
            self._index.reload()
            self._searcher = self._index.searcher()
            return written

    def clear(self) -> None:
        """Drop every document (the knowledge base is rebuilt on a config reload)."""
        with self._commit_lock:
            with self._buffer_lock:
                self._buffer = []
            self._unsaved = 0
            self._writer.delete_all_documents()
            self._writer.commit()
            self._index.reload()
            self._searcher = self._index.searcher()

    # ---------------------------------------------------------------- reading

    def __len__(self) -> int:
        return int(self._searcher.num_docs)

    def search(self, terms: Sequence[str], *, filters: dict[str, str] | None = None,
               limit: int = 10) -> list[Hit]:
        """The `limit` best documents by BM25 over `terms` among those whose filter
        fields equal the given values (or hold ANY)."""
        unique = list(dict.fromkeys(t for t in terms if t))
        if not unique:
            return []
        should = [(tantivy.Occur.Should,
                   tantivy.Query.term_query(self._schema, "terms", t, index_option="freq"))
                  for t in unique]
        clauses: list[tuple[Any, Any]] = [(tantivy.Occur.Must,
                                           tantivy.Query.boolean_query(should))]
        for name, value in (filters or {}).items():
            either = tantivy.Query.boolean_query([
                (tantivy.Occur.Should, tantivy.Query.term_query(self._schema, name, value)),
                (tantivy.Occur.Should, tantivy.Query.term_query(self._schema, name, ANY))])
            clauses.append((tantivy.Occur.Must, tantivy.Query.const_score_query(either, 0.0)))
        searcher = self._searcher
        result = searcher.search(tantivy.Query.boolean_query(clauses), limit)
        hits = []
        for score, address in result.hits:
            doc = searcher.doc(address)
            hits.append(Hit(float(score), {name: (doc.get_first(name) or "")
                                           for name in self._stored}))
        return hits
