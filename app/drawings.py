"""People's own drawings, labelled by them: an append-only store that survives restarts
and crashes, and its exchange with other servers as MNIST-style files.

One SQLite database (the standard library's) in CNN_LIVE_DRAWINGS_DIR. Each change is
one transaction in write-ahead-log mode, so a server killed mid-save keeps every
drawing saved before, and the one in flight whole or not at all. A drawing keeps the
28x28 image the network saw (what it trains and is measured on), the drawing as it was
sent (to look at again, or to prepare differently one day), its label, and the answer
and probability the server gave when it was saved.

Files to exchange them (.npz, IDX) are cnn/drawings_file.py's.

The held-out split is fixed by id: every fifth drawing (id divisible by 5) is only ever
measured, never taught, so "your drawings" accuracy stays honest after teaching.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnn.drawings_file import HELD_OUT_EVERY, SIDE

MIN_DRAWINGS = 10  # fewer, and runs are not measured on them (a figure of noise)
# The write-ahead log is copied into the database (a checkpoint) by the save that takes
# it past this many pages: SQLite's default of 1,000 (4 MB, about 100 drawings of
# 200x200) made that save 9-13 ms slower, the p99 of a save; 200 pages cost 3-5 ms each
# (measured with 1,000 saves of a 200x200 drawing).
CHECKPOINT_PAGES = 200

SCHEMA = """
CREATE TABLE IF NOT EXISTS drawings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    label INTEGER NOT NULL CHECK (label BETWEEN 0 AND 9),
    image BLOB NOT NULL,             -- 28x28 bytes, 0..255, ink high: what the network saw
    drawing BLOB,                    -- the drawing as sent, height x width bytes (none if imported)
    drawing_width INTEGER,
    answer INTEGER,                  -- the server's answer when it was saved, and its probability
    probability REAL,
    answered_by TEXT                 -- which model gave that answer
)
"""


class DrawingError(ValueError):
    """A drawing or an import the store cannot take; the message says why."""


class StoreFull(DrawingError):
    """Saving would pass the store's maximum count."""


@dataclass(frozen=True)
class Drawing:
    id: int
    created: float
    label: int
    image: np.ndarray  # (28, 28) uint8
    answer: int | None
    probability: float | None
    answered_by: str | None
    has_drawing: bool

    @property
    def held_out(self) -> bool:
        return is_held_out(self.id)

    def summary(self) -> dict:
        return {"id": self.id, "created": self.created, "label": self.label,
                "answer": self.answer, "probability": self.probability,
                "answered_by": self.answered_by, "held_out": self.held_out,
                "image": self.image.tolist()}


def is_held_out(drawing_id: int) -> bool:
    return drawing_id % HELD_OUT_EVERY == 0


def to_bytes(image: np.ndarray) -> np.ndarray:
    """A (28, 28) image 0..1 (as the network reads it) -> uint8 0..255."""
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


class DrawingStore:
    """The drawings of one server. Opened on first use (importing the app must not
    touch the disk); safe to call from any thread."""

    def __init__(self, folder: Path, max_count: int) -> None:
        self.folder = Path(folder)
        self.max_count = max_count
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        # Counts this store's changes, so that a reader can keep what it read until the
        # next one (the run manager reads the drawings once per change, not per run).
        self.version = 0

    @property
    def path(self) -> Path:
        return self.folder / "drawings.sqlite3"

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            # WAL with NORMAL: a commit survives the process being killed (not a power
            # cut), at a fraction of FULL's fsync per save.
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
            db.execute(SCHEMA)
            self._db = db
        return self._db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- changes: each one transaction -------------------------------------------------

    def add(self, image: np.ndarray, label: int, drawing: np.ndarray | None = None,
            answer: int | None = None, probability: float | None = None,
            answered_by: str | None = None) -> Drawing:
        """Save one drawing: `image` (28, 28) uint8, `drawing` (H, W) uint8 as sent."""
        _check_label(label)
        row = (time.time(), int(label), _image_blob(image),
               None if drawing is None else np.ascontiguousarray(drawing, np.uint8).tobytes(),
               None if drawing is None else int(drawing.shape[1]),
               answer, probability, answered_by)
        with self._lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                self._refuse_past_max(db, 1)
                cursor = db.execute(
                    "INSERT INTO drawings (created, label, image, drawing, drawing_width, "
                    "answer, probability, answered_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self.version += 1
        return Drawing(cursor.lastrowid, row[0], int(label), np.array(image, np.uint8),
                       answer, probability, answered_by, drawing is not None)

    def add_many(self, images: np.ndarray, labels: np.ndarray,
                 answers: np.ndarray | None = None, probabilities: np.ndarray | None = None,
                 answered_by: str | None = None) -> list[int]:
        """Save imported drawings (images (N, 28, 28) uint8) all together or none."""
        for label in np.unique(labels):
            _check_label(int(label))
        now = time.time()
        rows = [(now, int(labels[i]), _image_blob(images[i]),
                 None if answers is None else int(answers[i]),
                 None if probabilities is None else float(probabilities[i]), answered_by)
                for i in range(len(labels))]
        with self._lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                self._refuse_past_max(db, len(rows))
                first = db.execute("SELECT COALESCE(MAX(id), 0) FROM drawings").fetchone()[0]
                db.executemany("INSERT INTO drawings (created, label, image, answer, "
                               "probability, answered_by) VALUES (?, ?, ?, ?, ?, ?)", rows)
                ids = [row[0] for row in db.execute(
                    "SELECT id FROM drawings WHERE id > ? ORDER BY id", (first,))]
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self.version += 1
        return ids

    def relabel(self, drawing_id: int, label: int) -> Drawing | None:
        _check_label(label)
        with self._lock:
            db = self._connection()
            changed = db.execute("UPDATE drawings SET label = ? WHERE id = ?",
                                 (int(label), drawing_id)).rowcount
            self.version += 1
        return self.get(drawing_id) if changed else None

    def delete(self, drawing_id: int) -> bool:
        with self._lock:
            deleted = self._connection().execute("DELETE FROM drawings WHERE id = ?",
                                                 (drawing_id,)).rowcount > 0
            self.version += 1
        return deleted

    def _refuse_past_max(self, db: sqlite3.Connection, adding: int) -> None:
        count = db.execute("SELECT COUNT(*) FROM drawings").fetchone()[0]
        if count + adding > self.max_count:
            raise StoreFull(f"the drawings store holds {count:,} of at most "
                            f"{self.max_count:,} (CNN_LIVE_MAX_DRAWINGS): "
                            f"{adding:,} more would pass it; delete some first")

    # -- reading ------------------------------------------------------------------------

    def get(self, drawing_id: int) -> Drawing | None:
        rows = self._select("WHERE id = ?", (drawing_id,))
        return rows[0] if rows else None

    def drawing(self, drawing_id: int) -> np.ndarray | None:
        """The drawing as it was sent, (H, W) uint8, or None (unknown id, or imported)."""
        with self._lock:
            row = self._connection().execute(
                "SELECT drawing, drawing_width FROM drawings WHERE id = ?",
                (drawing_id,)).fetchone()
        if row is None or row[0] is None:
            return None
        return np.frombuffer(row[0], np.uint8).reshape(-1, row[1])

    def list(self, label: int | None = None, limit: int = 100,
             after: int = 0) -> list[Drawing]:
        """Drawings by id, those after `after`, at most `limit`."""
        if label is None:
            return self._select("WHERE id > ? ORDER BY id LIMIT ?", (after, limit))
        return self._select("WHERE label = ? AND id > ? ORDER BY id LIMIT ?",
                            (label, after, limit))

    def counts(self) -> dict[int, int]:
        """Drawings per label (every digit, 0 for none)."""
        with self._lock:
            rows = self._connection().execute(
                "SELECT label, COUNT(*) FROM drawings GROUP BY label").fetchall()
        counts = dict.fromkeys(range(10), 0)
        counts.update({int(label): int(n) for label, n in rows})
        return counts

    def arrays(self, split: str = "all") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, images (N, 28, 28) uint8, labels (N,) int64) of "all", the "held_out"
        fifth, or the "teaching" rest."""
        where = {"all": "", "held_out": f"WHERE id % {HELD_OUT_EVERY} = 0",
                 "teaching": f"WHERE id % {HELD_OUT_EVERY} != 0"}[split]
        with self._lock:
            rows = self._connection().execute(
                f"SELECT id, label, image FROM drawings {where} ORDER BY id").fetchall()
        ids = np.array([row[0] for row in rows], np.int64)
        labels = np.array([row[1] for row in rows], np.int64)
        images = (np.frombuffer(b"".join(row[2] for row in rows), np.uint8)
                  .reshape(len(rows), SIDE, SIDE))
        return ids, images, labels

    def _select(self, clause: str, parameters: tuple) -> list[Drawing]:
        with self._lock:
            rows = self._connection().execute(
                "SELECT id, created, label, image, answer, probability, answered_by, "
                f"drawing IS NOT NULL FROM drawings {clause}", parameters).fetchall()
        return [Drawing(row[0], row[1], row[2],
                        np.frombuffer(row[3], np.uint8).reshape(SIDE, SIDE), row[4], row[5],
                        row[6], bool(row[7])) for row in rows]


def _check_label(label: int) -> None:
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) \
            or not 0 <= label <= 9:
        raise DrawingError(f"a label is a digit 0..9, not {label!r}")


def _image_blob(image: np.ndarray) -> bytes:
    image = np.asarray(image)
    if image.shape != (SIDE, SIDE) or image.dtype != np.uint8:
        raise DrawingError(f"an image is 28x28 bytes, not {image.shape} {image.dtype}")
    return np.ascontiguousarray(image).tobytes()
