"""A persistent memory several processes share: SQLite in WAL mode, BM25 (FTS5) plus vectors (sqlite-vec).

    store = MemoryStore("runs/tiny/memory.db")          # MiniLM vectors + BM25; embedder=None: BM25 only
    store.write("belenan lives in befvik.", tags=["kb"])  # returns the id once committed (durable)
    store.search("where does belenan live?", k=5)          # hybrid: reciprocal-rank fusion of BM25 and vectors
    store.search("belenan lives in", k=1)                 # items holding the query as a phrase come first

Every write is one `BEGIN IMMEDIATE` transaction over the item, its FTS5 row and its vector, committed with
`synchronous=FULL`: once `write` has returned, the item survives a kill of the process (or of the machine).
Concurrent writers wait on SQLite's lock (`busy_timeout`); readers never block writers (WAL).
The store remembers which embedder wrote its vectors and refuses another one.
Vector search reads an in-process copy of the vectors (`vector_index.VectorMirror`, exact, ~1 ms over 10,000
MiniLM vectors) kept current from the table before each search; `mirror=False` asks sqlite-vec's scan instead.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import ForgeError
from .embed import DEFAULT_EMBEDDER, MEMORY_EXTRA_HINT, make_embedder
from .vector_index import VectorMirror

MODES = ("hybrid", "bm25", "vector")
RRF_K = 60
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Hit:
    id: int
    text: str
    tags: tuple[str, ...]
    score: float


def sqlite_module():
    """The SQLite binding: the standard library's where it can load extensions (sqlite-vec), else pysqlite3
    (`pysqlite3-binary`, in the `memory` extra on Linux), else the standard library's (BM25 only)."""
    if hasattr(sqlite3.Connection, "enable_load_extension"):
        return sqlite3
    try:
        from pysqlite3 import dbapi2
    except ImportError:
        return sqlite3
    return dbapi2


def _load_vec(connection) -> None:
    try:
        import sqlite_vec
    except ImportError:
        raise ForgeError(f"vector memory needs sqlite-vec: {MEMORY_EXTRA_HINT} (or embedder=None for BM25 only)") from None
    if not hasattr(connection, "enable_load_extension"):
        raise ForgeError("this Python's sqlite3 cannot load extensions (sqlite-vec): pip install pysqlite3-binary, "
                         f"or {MEMORY_EXTRA_HINT}; or embedder=None for BM25 only")
    connection.enable_load_extension(True)
    try:
        sqlite_vec.load(connection)
    finally:
        connection.enable_load_extension(False)


def fts_query(text: str) -> str:
    """A safe FTS5 query: the text's words, each quoted, OR-ed (no FTS5 syntax from the user reaches SQLite)."""
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))[:64]
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)


def fts_phrase(text: str) -> str:
    """A safe FTS5 phrase query: the text's words in order, as one quoted phrase ("" for fewer than two words)."""
    words = [w.lower() for w in _WORD.findall(text)][:64]
    return '"' + " ".join(w.replace('"', '""') for w in words) + '"' if len(words) > 1 else ""


class MemoryStore:
    """Text items with tags, searchable by BM25, by vector similarity, or by both (hybrid)."""

    def __init__(self, path: str | os.PathLike, *, embedder=DEFAULT_EMBEDDER, timeout_s: float = 60.0,
                 mirror: bool = True, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        self.embedder = make_embedder(embedder)
        self._lock = threading.Lock()
        self._sqlite = sqlite_module() if self.embedder is not None else sqlite3
        if read_only:
            # a snapshot inside a hashed agent bundle: opened so that SQLite writes nothing, not even WAL sidecars
            if not self.path.is_file():
                raise ForgeError(f"memory {self.path} does not exist")
            self._db = self._sqlite.connect(f"{self.path.resolve().as_uri()}?mode=ro&immutable=1", uri=True,
                                            isolation_level=None, check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._sqlite.connect(str(self.path), timeout=timeout_s, isolation_level=None,
                                            check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            self._retry(lambda: self._db.execute("PRAGMA journal_mode = WAL"))
            self._db.execute("PRAGMA synchronous = FULL")
        self.vectors = False
        self._setup_read_only() if read_only else self._setup()
        self._mirror = VectorMirror(self.embedder.dim) if (self.vectors and mirror) else None

    def _retry(self, action, attempts: int = 50):
        for attempt in range(attempts):
            try:
                return action()
            except self._sqlite.OperationalError as error:  # journal-mode switch races with another opener
                if "locked" not in str(error) or attempt == attempts - 1:
                    raise
                time.sleep(0.05)

    def _setup(self) -> None:
        db = self._db
        self._retry(lambda: db.execute("BEGIN IMMEDIATE"))
        try:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, text TEXT NOT NULL, "
                       "tags TEXT NOT NULL DEFAULT '[]', created REAL NOT NULL)")
            db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS items_fts USING fts5(text, tags)")
            row = db.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
            stored = json.loads(row[0]) if row else None
            if self.embedder is not None:
                wanted = {"name": self.embedder.name, "dim": self.embedder.dim}
                if stored is not None and stored != wanted:
                    raise ForgeError(f"memory {self.path} holds {stored['name']} vectors; opened with {wanted['name']}")
                _load_vec(db)
                db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS items_vec USING vec0(embedding float[{wanted['dim']}])")
                if stored is None:
                    count = db.execute("SELECT count(*) FROM items").fetchone()[0]
                    if count:
                        raise ForgeError(f"memory {self.path} has {count} items without vectors; open it with embedder=None")
                    db.execute("INSERT INTO meta VALUES ('embedder', ?)", (json.dumps(wanted),))
                self.vectors = True
            elif stored is not None:
                self._stored_embedder = stored
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _setup_read_only(self) -> None:
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
        except self._sqlite.DatabaseError as error:
            raise ForgeError(f"memory {self.path} is not a memory store ({error})") from None
        stored = json.loads(row[0]) if row else None
        if self.embedder is not None and stored is not None:
            wanted = {"name": self.embedder.name, "dim": self.embedder.dim}
            if stored != wanted:
                raise ForgeError(f"memory {self.path} holds {stored['name']} vectors; opened with {wanted['name']}")
            _load_vec(self._db)
            self.vectors = True
        elif stored is not None:
            self._stored_embedder = stored

    # -- writing --------------------------------------------------------------------------------------------
    def write(self, text: str, tags: Iterable[str] = ()) -> int:
        """Store one item; returns its id after the commit (the write is durable from then on)."""
        return self.write_many([text], [tags])[0]

    def write_many(self, texts: Sequence[str], tags: Sequence[Iterable[str]] | None = None) -> list[int]:
        """Store several items in one transaction (all or none); their ids in order."""
        if self.read_only:
            raise ForgeError(f"memory {self.path} is opened read-only (a snapshot inside an agent bundle)")
        texts = [str(t) for t in texts]
        tag_lists = [list(map(str, t)) for t in (tags if tags is not None else [()] * len(texts))]
        if len(tag_lists) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(tag_lists)} tag lists")
        if self.embedder is None and getattr(self, "_stored_embedder", None):
            raise ForgeError(f"memory {self.path} keeps {self._stored_embedder['name']} vectors: open it with that "
                             "embedder to write")
        vectors = self.embedder.encode(texts).astype(np.float32) if self.vectors else None
        now = time.time()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                ids = []
                for i, (text, tag_list) in enumerate(zip(texts, tag_lists)):
                    cursor = db.execute("INSERT INTO items (text, tags, created) VALUES (?, ?, ?)",
                                        (text, json.dumps(tag_list), now))
                    item = cursor.lastrowid
                    db.execute("INSERT INTO items_fts (rowid, text, tags) VALUES (?, ?, ?)", (item, text, " ".join(tag_list)))
                    if vectors is not None:
                        db.execute("INSERT INTO items_vec (rowid, embedding) VALUES (?, ?)", (item, vectors[i].tobytes()))
                    ids.append(item)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return ids

    # -- reading --------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM items").fetchone()[0]

    def get(self, item: int) -> Hit | None:
        with self._lock:
            row = self._db.execute("SELECT id, text, tags FROM items WHERE id = ?", (item,)).fetchone()
        return Hit(row[0], row[1], tuple(json.loads(row[2])), 0.0) if row else None

    def bm25(self, query: str, k: int) -> list[tuple[int, float]]:
        """(id, score) by FTS5 BM25, best first (score = -bm25, higher is better)."""
        return self._fts(fts_query(query), k)

    def phrase_matches(self, query: str, k: int) -> list[int]:
        """Ids of the items that hold the query's words as one phrase, in order (BM25 order among them)."""
        return [item for item, _ in self._fts(fts_phrase(query), k)]

    def _fts(self, match: str, k: int) -> list[tuple[int, float]]:
        """(id, -bm25) of the k best items for an FTS5 MATCH expression; [] for an empty one."""
        if not match:
            return []
        with self._lock:
            rows = self._db.execute("SELECT rowid, bm25(items_fts) AS s FROM items_fts WHERE items_fts MATCH ? "
                                    "ORDER BY s LIMIT ?", (match, k)).fetchall()
        return [(r[0], -r[1]) for r in rows]

    def nearest(self, query: str | np.ndarray, k: int) -> list[tuple[int, float]]:
        """(id, similarity) by vector search, best first; [] without vectors."""
        if not self.vectors:
            return []
        if isinstance(query, str):
            encode_query = getattr(self.embedder, "encode_query", None)  # cached where the embedder offers it
            vector = encode_query(query) if encode_query else self.embedder.encode([query])[0]
        else:
            vector = np.asarray(query, dtype=np.float32)
        if vector.shape != (self.embedder.dim,):
            raise ValueError(f"query vector must have shape ({self.embedder.dim},), got {vector.shape}")
        with self._lock:
            if self._mirror is not None:
                self._mirror.sync(self._db)
                return self._mirror.search(vector, k)
            rows = self._db.execute("SELECT rowid, distance FROM items_vec WHERE embedding MATCH ? AND k = ? "
                                    "ORDER BY distance", (vector.astype(np.float32).tobytes(), k)).fetchall()
        return [(r[0], 1.0 - r[1] ** 2 / 2) for r in rows]  # unit vectors: cosine from L2 distance

    def search(self, query: str, k: int = 5, *, mode: str = "hybrid", tag: str | None = None,
               phrase_first: bool = True) -> list[Hit]:
        """The `k` best items for `query`: "bm25", "vector", or "hybrid" (reciprocal-rank fusion of both).

        In the lexical modes (bm25, hybrid) the items that hold the query's words as one phrase come first
        (`phrase_first`), as a search engine ranks an exact phrase match above a bag of the same words: BM25
        scores "the boss of keta is" alike against "the boss of keta is rega." and "the boss of rega is keta.",
        and so, often, do sentence vectors. A question, whose words no passage holds in order, is ranked by the
        fusion alone."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if mode != "bm25" and not self.vectors:
            mode = "bm25"
        depth = max(4 * k, 20) if (mode == "hybrid" or tag) else k
        if mode == "bm25":
            ranked = self.bm25(query, depth)
        elif mode == "vector":
            ranked = self.nearest(query, depth)
        else:
            fused: dict[int, float] = {}
            for ranking in (self.bm25(query, depth), self.nearest(query, depth)):
                for rank, (item, _) in enumerate(ranking):
                    fused[item] = fused.get(item, 0.0) + 1.0 / (RRF_K + rank + 1)
            ranked = sorted(fused.items(), key=lambda kv: -kv[1])
        if mode != "vector" and phrase_first:
            exact = self.phrase_matches(query, depth)
            if exact:
                first, reached = set(exact), {item for item, _ in ranked}
                # a stable sort: the phrase matches in the fused order (those the fusion did not reach after
                # them), then the rest in the fused order
                unreached = [(i, 0.0) for i in exact if i not in reached]
                ranked = sorted(ranked + unreached, key=lambda kv: kv[0] not in first)
        hits = []
        for item, score in ranked:
            found = self.get(item)
            if found is None or (tag is not None and tag not in found.tags):
                continue
            hits.append(Hit(found.id, found.text, found.tags, float(score)))
            if len(hits) == k:
                break
        return hits

    def integrity_check(self) -> str:
        with self._lock:
            return self._db.execute("PRAGMA integrity_check").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
