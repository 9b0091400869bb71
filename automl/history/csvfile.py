"""History records as CSV files (``python -m automl.history action=export|import``): one row per record,
columns :data:`automl.history.records.FIELDS`, dict fields as JSON."""

from __future__ import annotations

import csv
import functools
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from automl._fileio import atomic_path
from automl.history.records import (
    DICT_FIELDS,
    FIELDS,
    HistoryError,
    RecordError,
    TransferRecord,
    dump_field,
    load_field,
)

OPTIONAL_COLUMNS = ("id", "fidelity")  # files written before fidelity was recorded lack it


def _csv_row(record: TransferRecord) -> dict[str, str]:
    row = {}
    for name in FIELDS:
        value = getattr(record, name)
        if name in DICT_FIELDS:
            row[name] = dump_field(name, value)
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
    **{name: functools.partial(load_field, name) for name in DICT_FIELDS},
}


def read_csv(path: str | Path) -> list[TransferRecord]:
    """Parse a history CSV; a malformed file raises :class:`HistoryError` naming the file, line and column."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [name for name in FIELDS if name not in header and name not in OPTIONAL_COLUMNS]
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



def write_csv(path: str | Path, records: Sequence[TransferRecord]) -> int:
    """Write ``records`` to a CSV at ``path`` (atomically; columns :data:`FIELDS`); return the count."""
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(_csv_row(record) for record in records)
    return len(records)
