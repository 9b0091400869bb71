"""The history database: one table of transfer records (``automl_transfers``) and a schema version
(``automl_meta``) in the ``storage`` database that also holds the Optuna studies.

Guarantees:

* ``add`` is one transaction and idempotent on ``(run_id, kind, trial, model_name, task_fingerprint)``:
  re-adding returns the stored id, so a resumed run can re-record safely.
* Several processes may write at once. SQLite: every write transaction starts with ``BEGIN IMMEDIATE``
  (one writer at a time; the others wait up to ``SQLITE_TIMEOUT_S`` instead of failing with
  "database is locked"). PostgreSQL: table creation is serialised with an advisory lock; concurrent
  duplicates are resolved by the unique key.
* The schema is versioned: a database written by a newer automl is refused with a clear error, an older
  known version is migrated in one transaction, and an unversioned ``automl_transfers`` table is refused.
* Dict columns are JSON in TEXT columns (portable across SQLite and PostgreSQL); non-finite scores are
  stored as JSON ``null`` and read back as NaN.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from automl._storage import SQLITE_TIMEOUT_S, redact_url, storage_url
from automl.history.csvfile import read_csv, write_csv
from automl.history.records import (
    DICT_FIELDS,
    FIELDS,
    KINDS,
    MAX_NAME,
    HistoryError,
    TransferRecord,
    dump_field,
    load_field,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
_VERSION_KEY = "history_schema_version"
_NO_TRIAL = -1  # stored for trial=None: SQL unique keys treat NULLs as distinct, so None would never dedupe
_PG_LOCK_KEY = 0x6175746F6D6C  # "automl": serialises schema creation/migration on PostgreSQL

_metadata = sa.MetaData()
_meta_table = sa.Table(
    "automl_meta", _metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(MAX_NAME), nullable=False),
)
_table = sa.Table(
    "automl_transfers", _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(MAX_NAME), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("trial", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),  # naive UTC
    sa.Column("task_name", sa.String(MAX_NAME), nullable=False),
    sa.Column("task_fingerprint", sa.String(MAX_NAME), nullable=False, index=True),
    sa.Column("task_meta", sa.Text, nullable=False),
    sa.Column("model_name", sa.String(MAX_NAME), nullable=False),
    sa.Column("arch", sa.String(MAX_NAME), nullable=False),
    sa.Column("weights_digest", sa.String(MAX_NAME), nullable=False),
    sa.Column("model_meta", sa.Text, nullable=False),
    sa.Column("scores", sa.Text, nullable=False),
    sa.Column("scores_z", sa.Text, nullable=False),
    sa.Column("hparams", sa.Text, nullable=False),
    sa.Column("val_accuracy", sa.Double),
    sa.Column("test_accuracy", sa.Double),
    sa.Column("epochs", sa.Integer),
    sa.Column("seconds", sa.Double),
    sa.Column("fidelity", sa.Text, nullable=False, server_default="{}"),
    sa.UniqueConstraint("run_id", "kind", "trial", "model_name", "task_fingerprint", name="uq_automl_transfers_key"),
)
_KEY_COLUMNS = ("run_id", "kind", "trial", "model_name", "task_fingerprint")

# Schema migrations: _MIGRATIONS[v] upgrades a version-v database to v + 1 inside the setup transaction.
_MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    1: lambda conn: conn.execute(sa.text("ALTER TABLE automl_transfers ADD COLUMN fidelity TEXT NOT NULL DEFAULT '{}'")),
}


def _to_row(record: TransferRecord) -> dict[str, Any]:
    row = {name: getattr(record, name) for name in FIELDS if name != "id"}
    row["trial"] = _NO_TRIAL if record.trial is None else record.trial
    row["created_at"] = record.created_at.astimezone(timezone.utc).replace(tzinfo=None)
    for name in DICT_FIELDS:
        row[name] = dump_field(name, row[name])
    return row


def _from_row(row: Mapping[str, Any]) -> TransferRecord:
    values = dict(row)
    values["trial"] = None if values["trial"] == _NO_TRIAL else values["trial"]
    for name in DICT_FIELDS:
        values[name] = load_field(name, values[name])
    return TransferRecord(**values)


def _create_engine(url: str) -> Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True)
    engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_TIMEOUT_S})

    # SQLAlchemy's recipe for real SQLite transactions: the driver's legacy mode neither begins DDL
    # transactions nor takes the write lock up front. Writers BEGIN IMMEDIATE (wait for the lock, then
    # hold it), so two writers never deadlock on a read-to-write lock upgrade.
    @sa.event.listens_for(engine, "connect")
    def _driver_without_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        write = connection.get_execution_options().get("automl_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


class History:
    """The transfer history in the database at ``storage`` (a SQLAlchemy URL; created if absent).

    Creating one creates the tables if needed and checks the schema version; it is safe when several
    processes start at once. Use as a context manager (or call :meth:`close`) to release connections.
    """

    def __init__(self, storage: str):
        self.url = storage_url(storage)  # a relative SQLite path is made absolute and its folder created
        self._engine = _create_engine(self.url)
        try:
            self._setup_schema()
        except Exception:
            self._engine.dispose()
            raise

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._engine.dispose()

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction (committed on success, rolled back on error)."""
        with self._engine.connect().execution_options(automl_write=True) as conn, conn.begin():
            yield conn

    def _setup_schema(self) -> None:
        with self._write() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            inspector = sa.inspect(conn)
            version = None
            if inspector.has_table(_meta_table.name):
                version = conn.scalar(sa.select(_meta_table.c.value).where(_meta_table.c.key == _VERSION_KEY))
            if version is None:
                if inspector.has_table(_table.name):
                    raise HistoryError(f"{redact_url(self.url)}: table {_table.name} exists without an automl schema "
                                       f"version in {_meta_table.name}; it was not written by automl, refusing to use it")
                _metadata.create_all(conn)
                conn.execute(sa.insert(_meta_table).values(key=_VERSION_KEY, value=str(SCHEMA_VERSION)))
                return
            self._migrate(conn, int(version))

    def _migrate(self, conn: Connection, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise HistoryError(f"{redact_url(self.url)}: the transfer history was written by automl schema "
                               f"v{version}, this is v{SCHEMA_VERSION}; upgrade automl")
        for step in range(version, SCHEMA_VERSION):
            if step not in _MIGRATIONS:
                raise HistoryError(f"{redact_url(self.url)}: the transfer history has schema v{version}, which this "
                                   f"automl (v{SCHEMA_VERSION}) cannot migrate")
            log.info("history: migrating schema v%d -> v%d", step, step + 1)
            _MIGRATIONS[step](conn)
        if version < SCHEMA_VERSION:
            conn.execute(sa.update(_meta_table).where(_meta_table.c.key == _VERSION_KEY)
                         .values(value=str(SCHEMA_VERSION)))

    def add(self, record: TransferRecord) -> int:
        """Store ``record`` in one transaction; return its id (the existing id if its key is already stored).

        The key is ``(run_id, kind, trial, model_name, task_fingerprint)``; ``record.id`` is ignored and
        ``record`` is not modified.
        """
        with self._write() as conn:
            return _insert(conn, record)[0]

    def add_all(self, records: Sequence[TransferRecord]) -> int:
        """Store ``records`` in one transaction (all or nothing); return how many were new (duplicates skipped)."""
        with self._write() as conn:
            return sum(_insert(conn, record)[1] for record in records)

    def records(self, task_fingerprint: str | None = None, kind: str | None = None) -> list[TransferRecord]:
        """Stored records in insertion order, optionally only those of one task and/or one kind."""
        if kind is not None and kind not in KINDS:
            raise HistoryError(f"kind={kind!r} is not one of {', '.join(KINDS)}")
        query = sa.select(_table).order_by(_table.c.id)
        if task_fingerprint is not None:
            query = query.where(_table.c.task_fingerprint == task_fingerprint)
        if kind is not None:
            query = query.where(_table.c.kind == kind)
        with self._engine.connect() as conn:
            return [_from_row(row) for row in conn.execute(query).mappings()]

    def export_csv(self, path: str | Path) -> int:
        """Write every record to a CSV at ``path`` (atomically; columns :data:`FIELDS`); return the count."""
        return write_csv(path, self.records())

    def import_csv(self, path: str | Path) -> int:
        """Add the records of a CSV written by :meth:`export_csv`; return how many were new.

        The whole file is validated first and added in one transaction, so a bad file adds nothing. The
        ``id`` column is ignored (ids are local to a database).
        """
        return self.add_all(read_csv(path))


def _insert(conn: Connection, record: TransferRecord) -> tuple[int, bool]:
    """(id, added) for ``record`` inside the open transaction ``conn``."""
    row = _to_row(record)
    key = sa.and_(*(_table.c[name] == row[name] for name in _KEY_COLUMNS))
    existing = conn.scalar(sa.select(_table.c.id).where(key))
    if existing is not None:
        return existing, False
    try:
        with conn.begin_nested():  # a concurrent writer may insert the same key first (PostgreSQL)
            return conn.execute(sa.insert(_table).values(**row)).inserted_primary_key[0], True
    except sa.exc.IntegrityError:
        existing = conn.scalar(sa.select(_table.c.id).where(key))
        if existing is None:
            raise
        return existing, False
