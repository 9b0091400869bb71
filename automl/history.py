"""The history of measured transfers: every fine-tuned accuracy next to the scores that predicted it.

One table, ``automl_transfers``, in the ``storage`` database (the SQLAlchemy URL that also holds the
Optuna studies), plus ``automl_meta`` holding the schema version. A record is one measured transfer
(bank model → task) with the task/model meta-features, every transferability score (raw and z-scored
across the bank at rank time), the hyperparameters and the measured accuracies. The accuracy
predictor (:mod:`automl.predictor`) is refit on these records.

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

Command line (``storage`` defaults to the Hydra config's ``storage``)::

    python -m automl.history export out.csv [storage=URL]
    python -m automl.history import in.csv [storage=URL]
    python -m automl.history list [storage=URL]
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import json
import logging
import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from automl.config import storage_url
from automl.fileio import atomic_path

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
KINDS = ("finetune", "oracle", "import")  # import: transfers measured outside automl (papers, other tools)
SQLITE_TIMEOUT_S = 120.0  # how long a writer waits for SQLite's write lock before failing
_VERSION_KEY = "history_schema_version"
_NO_TRIAL = -1  # stored for trial=None: SQL unique keys treat NULLs as distinct, so None would never dedupe
_PG_LOCK_KEY = 0x6175746F6D6C  # "automl": serialises schema creation/migration on PostgreSQL
_MAX_NAME = 255

_metadata = sa.MetaData()
_meta_table = sa.Table(
    "automl_meta", _metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(_MAX_NAME), nullable=False),
)
_table = sa.Table(
    "automl_transfers", _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(_MAX_NAME), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("trial", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),  # naive UTC
    sa.Column("task_name", sa.String(_MAX_NAME), nullable=False),
    sa.Column("task_fingerprint", sa.String(_MAX_NAME), nullable=False, index=True),
    sa.Column("task_meta", sa.Text, nullable=False),
    sa.Column("model_name", sa.String(_MAX_NAME), nullable=False),
    sa.Column("arch", sa.String(_MAX_NAME), nullable=False),
    sa.Column("weights_digest", sa.String(_MAX_NAME), nullable=False),
    sa.Column("model_meta", sa.Text, nullable=False),
    sa.Column("scores", sa.Text, nullable=False),
    sa.Column("scores_z", sa.Text, nullable=False),
    sa.Column("hparams", sa.Text, nullable=False),
    sa.Column("val_accuracy", sa.Double),
    sa.Column("test_accuracy", sa.Double),
    sa.Column("epochs", sa.Integer),
    sa.Column("seconds", sa.Double),
    sa.UniqueConstraint("run_id", "kind", "trial", "model_name", "task_fingerprint", name="uq_automl_transfers_key"),
)
_KEY_COLUMNS = ("run_id", "kind", "trial", "model_name", "task_fingerprint")

# Schema migrations: _MIGRATIONS[v] upgrades a version-v database to v + 1 inside the setup transaction.
_MIGRATIONS: dict[int, Callable[[Connection], None]] = {}


class HistoryError(ValueError):
    """The history database or a history file cannot be used as given; the message says why and where."""


class RecordError(HistoryError):
    """A record field is invalid; ``field`` names it."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"field {field_name!r}: {message}")
        self.field = field_name


@dataclass(kw_only=True)
class TransferRecord:
    """One measured transfer of a bank model to a task.

    Accuracies are percentages in [0, 100]; ``seconds`` is the fit's wall time; ``created_at`` is a
    timezone-aware UTC datetime (a naive one is taken as UTC). ``scores`` holds the raw transferability
    scores (including ``linear``, the probe's cross-validated linear-classifier accuracy in percent);
    ``scores_z`` the same scores z-scored across the whole bank on this task at rank time (a fine-tuning
    run measures only the top-k models, so they cannot be recomputed from records). NaN scores are allowed.
    """

    id: int | None = None
    run_id: str
    kind: str
    trial: int | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    task_name: str
    task_fingerprint: str
    task_meta: dict[str, Any] = field(default_factory=dict)
    model_name: str
    arch: str = ""
    weights_digest: str = ""
    model_meta: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    scores_z: dict[str, float] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    epochs: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        for name in ("run_id", "task_name", "task_fingerprint", "model_name"):
            _check_name(name, getattr(self, name), allow_empty=False)
        for name in ("arch", "weights_digest"):
            _check_name(name, getattr(self, name), allow_empty=True)
        if self.kind not in KINDS:
            raise RecordError("kind", f"{self.kind!r} is not one of {', '.join(KINDS)}")
        self.id = _optional_int("id", self.id, minimum=1)
        self.trial = _optional_int("trial", self.trial, minimum=0)
        self.epochs = _optional_int("epochs", self.epochs, minimum=0)
        if not isinstance(self.created_at, datetime):
            raise RecordError("created_at", f"expected a datetime, got {type(self.created_at).__name__}")
        if self.created_at.tzinfo is None:
            self.created_at = self.created_at.replace(tzinfo=timezone.utc)
        self.created_at = self.created_at.astimezone(timezone.utc)
        for name in ("task_meta", "model_meta", "hparams"):
            setattr(self, name, _json_dict(name, getattr(self, name)))
        for name in ("scores", "scores_z"):
            setattr(self, name, _score_dict(name, getattr(self, name)))
        for name in ("val_accuracy", "test_accuracy"):
            value = _optional_float(name, getattr(self, name))
            if value is not None and not 0.0 <= value <= 100.0:
                raise RecordError(name, f"{value} is not a percentage in [0, 100]")
            setattr(self, name, value)
        self.seconds = _optional_float("seconds", self.seconds)
        if self.seconds is not None and self.seconds < 0:
            raise RecordError("seconds", f"{self.seconds} is negative")

    @property
    def measured_accuracy(self) -> float | None:
        """The measured fine-tuned accuracy in percent: test accuracy, else validation accuracy, else None."""
        return self.test_accuracy if self.test_accuracy is not None else self.val_accuracy


FIELDS = tuple(f.name for f in dataclasses.fields(TransferRecord))
_DICT_FIELDS = ("task_meta", "model_meta", "scores", "scores_z", "hparams")


def _check_name(name: str, value: Any, allow_empty: bool) -> None:
    if not isinstance(value, str) or (not value and not allow_empty):
        raise RecordError(name, f"expected a {'' if allow_empty else 'non-empty '}string, got {value!r}")
    if len(value) > _MAX_NAME:
        raise RecordError(name, f"longer than {_MAX_NAME} characters")


def _optional_int(name: str, value: Any, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise RecordError(name, f"expected an integer, got {value!r}")
    if value < minimum:
        raise RecordError(name, f"{value} is below {minimum}")
    return int(value)


def _optional_float(name: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise RecordError(name, f"expected a number, got {value!r}") from None
    if not math.isfinite(value):
        raise RecordError(name, f"{value} is not finite")
    return value


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars (np.int64 parameter counts, np.float64 hyperparameters)
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _json_dict(name: str, value: Any) -> dict[str, Any]:
    """A JSON-clean copy of ``value`` (a mapping), so what is stored is exactly what is read back."""
    if not isinstance(value, Mapping):
        raise RecordError(name, f"expected a mapping, got {type(value).__name__}")
    try:
        return json.loads(json.dumps(dict(value), default=_json_default, allow_nan=False, sort_keys=True))
    except (TypeError, ValueError) as error:
        raise RecordError(name, f"not JSON-serialisable: {error}") from None


def _score_dict(name: str, value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise RecordError(name, f"expected a mapping of score name to number, got {type(value).__name__}")
    scores = {}
    for key, score in value.items():
        try:
            scores[str(key)] = math.nan if score is None else float(score)
        except (TypeError, ValueError):
            raise RecordError(name, f"score {key!r} is not a number: {score!r}") from None
    return scores


def _dump(name: str, value: Mapping[str, Any]) -> str:
    if name in ("scores", "scores_z"):
        value = {key: score if math.isfinite(score) else None for key, score in value.items()}
    return json.dumps(value, sort_keys=True, allow_nan=False)


def _load(name: str, text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return _score_dict(name, value) if name in ("scores", "scores_z") else value


def _to_row(record: TransferRecord) -> dict[str, Any]:
    row = {name: getattr(record, name) for name in FIELDS if name != "id"}
    row["trial"] = _NO_TRIAL if record.trial is None else record.trial
    row["created_at"] = record.created_at.astimezone(timezone.utc).replace(tzinfo=None)
    for name in _DICT_FIELDS:
        row[name] = _dump(name, row[name])
    return row


def _from_row(row: Mapping[str, Any]) -> TransferRecord:
    values = dict(row)
    values["trial"] = None if values["trial"] == _NO_TRIAL else values["trial"]
    for name in _DICT_FIELDS:
        values[name] = _load(name, values[name])
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
                    raise HistoryError(f"{_safe_url(self.url)}: table {_table.name} exists without an automl schema "
                                       f"version in {_meta_table.name}; it was not written by automl, refusing to use it")
                _metadata.create_all(conn)
                conn.execute(sa.insert(_meta_table).values(key=_VERSION_KEY, value=str(SCHEMA_VERSION)))
                return
            self._migrate(conn, int(version))

    def _migrate(self, conn: Connection, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise HistoryError(f"{_safe_url(self.url)}: the transfer history was written by automl schema "
                               f"v{version}, this is v{SCHEMA_VERSION}; upgrade automl")
        for step in range(version, SCHEMA_VERSION):
            if step not in _MIGRATIONS:
                raise HistoryError(f"{_safe_url(self.url)}: the transfer history has schema v{version}, which this "
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
        records = self.records()
        with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(_csv_row(record) for record in records)
        return len(records)

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


def _csv_row(record: TransferRecord) -> dict[str, str]:
    row = {}
    for name in FIELDS:
        value = getattr(record, name)
        if name in _DICT_FIELDS:
            row[name] = _dump(name, value)
        elif isinstance(value, datetime):
            row[name] = value.isoformat()
        else:
            row[name] = "" if value is None else str(value)
    return row


def _parse_int(text: str) -> int | None:
    return int(text) if text else None


def _parse_float(text: str) -> float | None:
    return float(text) if text else None


def _parse_datetime(text: str) -> datetime:
    return datetime.fromisoformat(text)


_CSV_PARSERS: dict[str, Callable[[str], Any]] = {
    "trial": _parse_int, "epochs": _parse_int, "created_at": _parse_datetime,
    "val_accuracy": _parse_float, "test_accuracy": _parse_float, "seconds": _parse_float,
    **{name: functools.partial(_load, name) for name in _DICT_FIELDS},
}


def read_csv(path: str | Path) -> list[TransferRecord]:
    """Parse a history CSV; a malformed file raises :class:`HistoryError` naming the file, line and column."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [name for name in FIELDS if name not in header and name != "id"]
            unknown = [name for name in header if name not in FIELDS]
            if missing or unknown:
                raise HistoryError(f"{path}, line 1: not a history CSV: missing column(s) {missing}, "
                                   f"unknown column(s) {unknown}; expected {list(FIELDS)}")
            return [_parse_row(path, reader.line_num, row) for row in reader]
    except csv.Error as error:
        raise HistoryError(f"{path}, line {reader.line_num}: malformed CSV: {error}") from None
    except UnicodeDecodeError as error:
        raise HistoryError(f"{path}: not UTF-8 text: {error}") from None
    except OSError as error:
        raise HistoryError(f"{path}: cannot read: {error.strerror or error}") from None


def _parse_row(path: Path, line: int, row: dict[str | None, Any]) -> TransferRecord:
    where = f"{path}, line {line}"
    if None in row:
        raise HistoryError(f"{where}: {len(row) - 1 + len(row[None])} fields, the header has {len(row) - 1}")
    values = {}
    for name, text in row.items():
        if name == "id":
            continue
        if text is None:
            raise HistoryError(f"{where}, column {name!r}: missing (the row is shorter than the header)")
        try:
            values[name] = _CSV_PARSERS.get(name, str)(text)
        except ValueError as error:
            raise HistoryError(f"{where}, column {name!r}: cannot parse {text!r}: {error}") from None
    try:
        return TransferRecord(**values)
    except RecordError as error:
        raise HistoryError(f"{where}, column {error.field!r}: {error}") from None


def _safe_url(url: str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


def _print_records(records: Sequence[TransferRecord]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(records)} measured transfer(s)")
    for column in ("id", "run", "kind", "trial", "task", "model", "val %", "test %", "epochs", "s", "UTC"):
        table.add_column(column, justify="right" if column in ("id", "trial", "val %", "test %", "epochs", "s")
                         else "left")

    def number(value: float | None, digits: int) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    for record in records:
        table.add_row(str(record.id), record.run_id, record.kind, "" if record.trial is None else str(record.trial),
                      record.task_name, record.model_name, number(record.val_accuracy, 2),
                      number(record.test_accuracy, 2), "" if record.epochs is None else str(record.epochs),
                      number(record.seconds, 1), record.created_at.strftime("%Y-%m-%d %H:%M"))
    Console().print(table)


_USAGE = """usage: python -m automl.history {export OUT.csv | import IN.csv | list} [storage=URL]
  export  write every measured transfer to a CSV (to share experience between machines/teams)
  import  add the transfers of such a CSV (duplicates are skipped)
  list    print the stored transfers
storage defaults to the Hydra config's `storage` (env AUTOML_STORAGE or sqlite:///outputs/automl.db)."""


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status."""
    from automl.config import compose

    args = list(sys.argv[1:] if argv is None else argv)
    options = dict(arg.split("=", 1) for arg in args if "=" in arg)
    positional = [arg for arg in args if "=" not in arg]
    if set(options) - {"storage"} or not positional or positional[0] not in ("export", "import", "list") \
            or len(positional) != (1 if positional[0] == "list" else 2):
        print(_USAGE, file=sys.stderr)
        return 2
    try:
        storage = options.get("storage") or str(compose().storage)
        with History(storage) as history:
            command = positional[0]
            if command == "export":
                count = history.export_csv(positional[1])
                print(f"exported {count} record(s) to {positional[1]}")
            elif command == "import":
                count = history.import_csv(positional[1])
                print(f"imported {count} new record(s) from {positional[1]} into {_safe_url(history.url)}")
            else:
                _print_records(history.records())
    except (HistoryError, OSError, sa.exc.SQLAlchemyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
