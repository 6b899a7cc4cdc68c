"""Run records and their metrics, kept in the runs directory (`runs.sqlite3`, SQLite from
the standard library), so that a restarted server still lists its earlier runs and
serves their metrics.

What is written, and when (never per batch, so never on training's hot path):
- a run's start (its row: preset, config, spec, state);
- each epoch's end: the epoch's record, the batch points published during it and the
  run's row (state, checkpoint), in one small transaction;
- a live change of the learning rate or momentum;
- a run's end (state, outcome, message).

`save(run)` writes the run's row and whatever of its epochs, batch points and changes
is not written yet: one write catches up on everything an earlier failed one missed.

WAL journal (readers never wait for the writer; a killed process loses at most the
transaction it was in, never the file), synchronous=NORMAL (a commit waits for no
fsync: a process crash keeps it, only a power cut may lose the last ones). One
connection, shared by the training thread and request threads under a lock.

Failures to write raise StoreError: the training manager reports them on the run and
goes on training. One server per runs directory: a second server on the same folder
would take the first one's active runs for interrupted ones.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from pathlib import Path

from cnn.checkpoint import epoch_of, read_metadata
from cnn.model import ModelFileError

log = logging.getLogger("cnn_live.run_store")

FILE_NAME = "runs.sqlite3"
SCHEMA_VERSION = 2  # 2: runs.node (where a run trained: runs as jobs)
RUN_COLUMNS = ("run_id", "preset", "config", "spec", "state", "outcome", "message",
               "started_at", "finished_at", "checkpoint", "checkpoint_epoch",
               "checkpoint_error", "node")
JSON_COLUMNS = ("config", "spec")
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, preset TEXT NOT NULL, config TEXT NOT NULL,
    spec TEXT NOT NULL, state TEXT NOT NULL, outcome TEXT, message TEXT,
    started_at REAL NOT NULL, finished_at REAL, checkpoint TEXT,
    checkpoint_epoch INTEGER, checkpoint_error TEXT, node TEXT);
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL, epoch INTEGER NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (run_id, epoch)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)) WITHOUT ROWID;
"""


class StoreError(RuntimeError):
    """The records could not be read or written; the message says where and why."""


def _json(value) -> str:
    # NumPy scalars (a loss may be a float32) as the Python numbers they hold.
    return json.dumps(value, default=lambda item: item.item() if hasattr(item, "item")
                      else str(item))


class RunStore:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        # Per run: how many of its epochs, batch points and changes are written.
        self._written: dict[str, tuple[int, int, int]] = {}

    # -- writing -------------------------------------------------------------------------

    def save(self, run) -> None:
        """Write `run` (a training.RunRecord) and what of its metrics is not written
        yet, in one transaction; StoreError if it cannot be written."""
        # Counted first: the training thread may append meanwhile; the rest goes next time.
        counts = (len(run.epochs), len(run.batches), len(run.hyperparameter_changes))
        with self._lock:
            connection = self._connect()
            epochs_done, batches_done, changes_done = self._written.get(run.run_id, (0, 0, 0))
            row = [getattr(run, column) for column in RUN_COLUMNS]
            row = [_json(value) if column in JSON_COLUMNS else value
                   for column, value in zip(RUN_COLUMNS, row)]
            try:
                with connection:  # one transaction: all of it or none
                    connection.execute(
                        f"INSERT OR REPLACE INTO runs ({', '.join(RUN_COLUMNS)}) "
                        f"VALUES ({', '.join('?' * len(RUN_COLUMNS))})", row)
                    connection.executemany(
                        "INSERT OR REPLACE INTO epochs VALUES (?, ?, ?)",
                        [(run.run_id, record["epoch"], _json(record))
                         for record in run.epochs[epochs_done:counts[0]]])
                    connection.executemany(
                        "INSERT OR REPLACE INTO batches VALUES (?, ?, ?)",
                        [(run.run_id, seq, _json(record)) for seq, record
                         in enumerate(run.batches[batches_done:counts[1]], batches_done)])
                    connection.executemany(
                        "INSERT OR REPLACE INTO changes VALUES (?, ?, ?)",
                        [(run.run_id, seq, _json(record)) for seq, record in
                         enumerate(run.hyperparameter_changes[changes_done:counts[2]],
                                   changes_done)])
            except sqlite3.Error as exc:
                raise StoreError(f"run records not written to {self.path}: {exc}") from None
            # Never less than before: a run listed from the store holds none of its
            # batch points in memory, yet they are written.
            self._written[run.run_id] = tuple(max(count, done) for count, done
                                              in zip(counts, (epochs_done, batches_done,
                                                              changes_done)))

    def truncate(self, run) -> None:
        """Forget what of `run` is beyond its epochs, batch points and changes now (a
        continued run trains again the epoch it was in), and write the run."""
        with self._lock:
            connection = self._connect()
            epochs = [record["epoch"] for record in run.epochs]
            try:
                with connection:
                    connection.execute("DELETE FROM epochs WHERE run_id = ? AND epoch > ?",
                                       (run.run_id, max(epochs, default=0)))
                    connection.execute("DELETE FROM batches WHERE run_id = ? AND seq >= ?",
                                       (run.run_id, len(run.batches)))
                    connection.execute("DELETE FROM changes WHERE run_id = ? AND seq >= ?",
                                       (run.run_id, len(run.hyperparameter_changes)))
            except sqlite3.Error as exc:
                raise StoreError(f"run records not written to {self.path}: {exc}") from None
            self._written[run.run_id] = (len(run.epochs), len(run.batches),
                                         len(run.hyperparameter_changes))
        self.save(run)

    def delete(self, run_id: str) -> None:
        """Forget a run altogether (a queued run taken out of the queue)."""
        with self._lock:
            connection = self._connect()
            try:
                with connection:
                    for table in ("runs", "epochs", "batches", "changes"):
                        connection.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            except sqlite3.Error as exc:
                raise StoreError(f"run records not written to {self.path}: {exc}") from None
            self._written.pop(run_id, None)

    # -- reading -------------------------------------------------------------------------

    def load(self) -> list[dict]:
        """Every stored run, oldest first: its row's fields, with `epochs` and
        `hyperparameter_changes` (batch points: `batches(run_id)`, read on demand).
        [] when there is no store yet; StoreError when it cannot be read."""
        if not self.path.exists():
            return []
        with self._lock:
            connection = self._connect()
            try:
                rows = connection.execute(
                    f"SELECT {', '.join(RUN_COLUMNS)} FROM runs ORDER BY started_at").fetchall()
                epochs = self._records(connection, "epochs", "epoch")
                changes = self._records(connection, "changes", "seq")
                batch_counts = dict(connection.execute(
                    "SELECT run_id, COUNT(*) FROM batches GROUP BY run_id").fetchall())
            except (sqlite3.Error, ValueError) as exc:  # ValueError: JSON
                raise StoreError(f"run records in {self.path} cannot be read: {exc}") from None
            runs = []
            for row in rows:
                run = dict(zip(RUN_COLUMNS, row))
                for column in JSON_COLUMNS:
                    run[column] = json.loads(run[column])
                run_id = run["run_id"]
                run["epochs"] = epochs.get(run_id, [])
                run["hyperparameter_changes"] = changes.get(run_id, [])
                self._written[run_id] = (len(run["epochs"]), batch_counts.get(run_id, 0),
                                         len(run["hyperparameter_changes"]))
                runs.append(run)
        return runs

    def batches(self, run_id: str) -> list[dict]:
        """A stored run's batch points, in order; StoreError when they cannot be read."""
        with self._lock:
            connection = self._connect()
            try:
                rows = connection.execute("SELECT record FROM batches WHERE run_id = ? "
                                          "ORDER BY seq", (run_id,)).fetchall()
                return [json.loads(record) for (record,) in rows]
            except (sqlite3.Error, ValueError) as exc:
                raise StoreError(f"run records in {self.path} cannot be read: {exc}") from None

    @staticmethod
    def _records(connection: sqlite3.Connection, table: str, order: str) -> dict[str, list]:
        records: dict[str, list] = {}
        for run_id, record in connection.execute(
                f"SELECT run_id, record FROM {table} ORDER BY run_id, {order}"):
            records.setdefault(run_id, []).append(json.loads(record))
        return records

    # -- the connection --------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """(Holding the lock.) The connection, opened on first use: a folder that cannot
        be written now may be fixed later, so a failed open is tried again next time."""
        if self._connection is not None:
            return self._connection
        connection = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path} was written by a newer cnn-live (records "
                                 f"version {version}; this one reads {SCHEMA_VERSION})")
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            with connection:
                connection.executescript(SCHEMA)
                if version == 1:  # records of a server before runs as jobs
                    connection.execute("ALTER TABLE runs ADD COLUMN node TEXT")
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as exc:
            if connection is not None:
                connection.close()
            raise StoreError(f"run records cannot be kept in {self.directory}: {exc}") from None
        except StoreError:
            connection.close()
            raise
        self._connection = connection
        return connection

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


# -- what a restarted server says about its earlier runs --------------------------------------

def verified_checkpoint(path: Path, run_id: str) -> tuple[str | None, int | None]:
    """A run's checkpoint as the file really is: (its path, the epoch it holds), or
    (None, None) when there is none, it cannot be read or it is another run's."""
    if not path.exists():
        return None, None
    try:
        metadata = read_metadata(path)
    except ModelFileError as exc:
        log.warning("run %s: its checkpoint is not usable: %s", run_id, exc)
        return None, None
    epoch = epoch_of(metadata)
    if metadata.get("run_id") != run_id or epoch is None:
        return None, None
    return str(path), epoch


def interrupted_message(epochs_done: int, epochs_planned: int,
                        checkpoint_epoch: int | None) -> str:
    """What an interrupted run's message says: where it stopped, and what can be done."""
    where = (f"during epoch {epochs_done + 1}" if epochs_done < epochs_planned
             else "as the run was ending")
    if checkpoint_epoch is None:
        return f"the server stopped {where}; it has no checkpoint to continue from"
    return f"the server stopped {where}; continue it from its checkpoint of epoch {checkpoint_epoch}"
