from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import run_cli

import automl
from automl._storage import storage_url
from automl.history import (
    FIELDS,
    SCHEMA_VERSION,
    History,
    HistoryError,
    RecordError,
    TransferRecord,
)
from automl.history.__main__ import main

REPO_ROOT = Path(automl.__file__).resolve().parent.parent


def make_record(**changes) -> TransferRecord:
    values = dict(
        run_id="study-a", kind="finetune", trial=3,
        created_at=datetime(2025, 5, 17, 12, 30, 15, 123456, tzinfo=timezone.utc),
        task_name="digits", task_fingerprint="f" * 64,
        task_meta={"num_classes": 10, "num_train": 1200, "image_side": 28},
        model_name="resnet18_imagenet", arch="resnet18", weights_digest="ab" * 32,
        model_meta={"num_params": 11_689_512, "depth": 18, "source_name": "imagenet-1k",
                    "source_num_images": 1_281_167, "source_num_classes": 1000},
        scores={"parc": 41.25, "logme": -0.731, "linear": 87.5},
        scores_z={"parc": 1.2, "logme": -0.3, "linear": 0.7},
        hparams={"lr": 0.003, "optimizer": "adamw", "epochs": 6},
        val_accuracy=91.5, test_accuracy=90.25, epochs=6, seconds=123.4,
    )
    values.update(changes)
    return TransferRecord(**values)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'automl.db'}"


def test_round_trip_keeps_every_field(url):
    record = make_record(scores={"parc": 41.25, "leep": math.nan, "linear": 87.5})
    with History(url) as history:
        record_id = history.add(record)
        (stored,) = history.records()
    assert stored.id == record_id and record.id is None
    assert math.isnan(stored.scores.pop("leep")) and math.isnan(record.scores.pop("leep"))
    assert stored == dataclasses.replace(record, id=record_id)
    assert stored.created_at.tzinfo is not None


def test_add_is_idempotent_on_its_key(url):
    with History(url) as history:
        first = history.add(make_record())
        assert history.add(make_record(val_accuracy=10.0)) == first  # a resumed run re-recording
        assert history.add(make_record(trial=None)) == history.add(make_record(trial=None))
        assert history.add(make_record(trial=4)) != first
        assert history.add(make_record(kind="oracle")) != first
        assert len(history.records()) == 4


def test_records_filter_by_task_and_kind(url):
    with History(url) as history:
        history.add(make_record())
        history.add(make_record(task_fingerprint="other", trial=1))
        history.add(make_record(kind="oracle", trial=None))
        assert [r.task_fingerprint for r in history.records(task_fingerprint="other")] == ["other"]
        assert [r.kind for r in history.records(kind="oracle")] == ["oracle"]
        with pytest.raises(HistoryError, match="kind='bogus'"):
            history.records(kind="bogus")


def test_invalid_records_name_the_field():
    with pytest.raises(RecordError, match="'kind'"):
        make_record(kind="guess")
    with pytest.raises(RecordError, match=r"'test_accuracy'.*percentage") as error:
        make_record(test_accuracy=101.0)
    assert error.value.field == "test_accuracy"
    with pytest.raises(RecordError, match="'model_name'"):
        make_record(model_name="")
    with pytest.raises(RecordError, match=r"'hparams'.*JSON"):
        make_record(hparams={"callback": object()})


def test_csv_round_trip_and_duplicates_skipped(tmp_path, url):
    records = [make_record(trial=i, created_at=datetime.now(timezone.utc) - timedelta(days=i)) for i in range(3)]
    records.append(make_record(trial=None, kind="import", val_accuracy=None, epochs=None, seconds=None,
                               hparams={}, model_meta={}))
    out = tmp_path / "shared" / "history.csv"
    with History(url) as history:
        for record in records:
            history.add(record)
        assert history.export_csv(out) == 4
    assert sorted(p.name for p in out.parent.iterdir()) == ["history.csv"]  # atomic: no temp file left
    with History(f"sqlite:///{tmp_path / 'other.db'}") as other:
        assert other.import_csv(out) == 4
        assert other.import_csv(out) == 0
        imported = other.records()
    assert [dataclasses.replace(r, id=None) for r in imported] == records


@pytest.mark.parametrize(("edit", "message"), [
    (lambda lines: [*lines[:2], lines[2].replace(",finetune,", ",guess,")], r"line 3, column 'kind'"),
    (lambda lines: [*lines[:2], lines[2].replace("91.5", "high")], r"line 3, column 'val_accuracy': cannot parse"),
    (lambda lines: [lines[0], lines[1].replace('""linear"": 87.5,', '""linear"": 87.5,,')], r"line 2, column 'scores'"),
    (lambda lines: [lines[0], lines[1] + ",extra"], r"line 2: 21 fields, the header has 20"),
    (lambda lines: [lines[0].replace("seconds", "second"), lines[1]], r"line 1: not a history CSV"),
])
def test_malformed_csv_names_file_line_and_column(tmp_path, url, edit, message):
    good = tmp_path / "good.csv"
    with History(url) as history:
        history.add(make_record(trial=0))
        history.add(make_record(trial=1))
        history.export_csv(good)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(edit(good.read_text().splitlines())) + "\n")
    with History(f"sqlite:///{tmp_path / 'other.db'}") as other:
        with pytest.raises(HistoryError, match=message) as error:
            other.import_csv(bad)
        assert str(bad) in str(error.value)
        assert other.records() == []  # nothing half-imported


def test_missing_csv_is_a_clear_error(tmp_path, url):
    with History(url) as history, pytest.raises(HistoryError, match=r"nothing\.csv: cannot read"):
        history.import_csv(tmp_path / "nothing.csv")


def _set_version(url: str, version: int) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE automl_meta SET value = :v WHERE key = 'history_schema_version'"),
                     {"v": str(version)})
    engine.dispose()


def test_newer_schema_is_refused(url):
    History(url).close()
    _set_version(url, SCHEMA_VERSION + 1)
    with pytest.raises(HistoryError, match=f"written by automl schema v{SCHEMA_VERSION + 1}, "
                                           f"this is v{SCHEMA_VERSION}; upgrade automl"):
        History(url)


def test_a_version_1_history_is_migrated_and_its_records_have_unknown_fidelity(url):
    with History(url) as history:
        history.add(make_record())
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the table as schema v1 had it
        conn.execute(sa.text("ALTER TABLE automl_transfers DROP COLUMN fidelity"))
    engine.dispose()
    _set_version(url, 1)
    with History(url) as history:
        (old,) = history.records()
        assert old.fidelity == {} and old.complete == (old.test_accuracy is not None)
        history.add(make_record(trial=4, fidelity={"state": "PRUNED", "planned_epochs": 6, "val_curve": [40.0]}))
        new = history.records()[1]
    assert new.fidelity["state"] == "PRUNED" and not new.complete
    with pytest.raises(RecordError, match="state 'HALF'"):
        make_record(fidelity={"state": "HALF"})


def test_unknown_older_schema_and_foreign_table_are_refused(tmp_path, url):
    History(url).close()
    _set_version(url, 0)
    with pytest.raises(HistoryError, match=r"schema v0, which this automl .* cannot migrate"):
        History(url)
    foreign = f"sqlite:///{tmp_path / 'foreign.db'}"
    engine = sa.create_engine(foreign)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE automl_transfers (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    with pytest.raises(HistoryError, match="without an automl schema version"):
        History(foreign)


_WRITER = """
import sys, time
from automl.history import History, TransferRecord
url, run_id, count, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
time.sleep(max(0.0, start - time.time()))  # both writers start together, tables not yet created
with History(url) as history:
    for trial in range(count):
        history.add(TransferRecord(run_id=run_id, kind="finetune", trial=trial, task_name="t",
                                   task_fingerprint="fp", model_name=f"m{trial % 3}", scores={"linear": 50.0},
                                   val_accuracy=float(trial % 100)))
"""


def _concurrent_writers(url: str, run_ids: list[str], count: int) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.time() + 3.0
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, url, run_id, str(count), str(start)], env=env,
                                stderr=subprocess.PIPE, text=True) for run_id in run_ids]
    for writer in writers:
        _, stderr = writer.communicate(timeout=120)
        assert writer.returncode == 0, stderr


@pytest.mark.slow
def test_two_processes_append_to_one_sqlite_file(url):
    _concurrent_writers(url, ["worker-a", "worker-b"], 50)
    with History(url) as history:
        records = history.records()
    assert len(records) == 100 and len({r.id for r in records}) == 100
    for run_id in ("worker-a", "worker-b"):
        assert sorted(r.trial for r in records if r.run_id == run_id) == list(range(50))


@pytest.fixture
def postgres_url():
    base = os.environ.get("AUTOML_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("set AUTOML_TEST_POSTGRES_URL to test against PostgreSQL")
    schema = f"automl_test_{uuid.uuid4().hex[:12]}"  # a fresh schema: the tables are created concurrently too
    admin = sa.create_engine(storage_url(base))
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.mark.slow
def test_two_processes_append_to_one_postgres_database(postgres_url):
    _concurrent_writers(postgres_url, ["pg-a", "pg-b"], 50)
    with History(postgres_url) as history:
        assert len(history.records()) == 100
        assert history.add(make_record()) == history.add(make_record())
        assert len(history.records(kind="finetune")) == 101


def test_postgresql_url_uses_an_installed_driver():
    assert storage_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    driver = sa.make_url(storage_url("postgresql://u:secret@host/db")).drivername
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        assert driver == "postgresql+psycopg2"
    assert "secret" in storage_url("postgresql://u:secret@host/db")


def test_command_line_export_import_list(tmp_path, url, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich: one line per record
    with History(url) as history:
        history.add(make_record())
    out = tmp_path / "out.csv"
    assert run_cli(main, "action=export", f"file={out}", f"storage={url}") == 0
    assert out.read_text().splitlines()[0] == ",".join(FIELDS)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert run_cli(main, "action=import", f"file={out}", f"storage={other}") == 0
    assert "imported 1 new record(s)" in capsys.readouterr().out
    assert run_cli(main, f"storage={other}") == 0
    assert "resnet18_imagenet" in capsys.readouterr().out
    assert run_cli(main, "action=import", f"file={tmp_path / 'missing.csv'}", f"storage={other}") == 2
    assert "missing.csv: cannot read" in capsys.readouterr().err
    assert run_cli(main, "action=frobnicate") != 0


@pytest.mark.slow
def test_module_entry_point(tmp_path, url):
    History(url).close()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-m", "automl.history", "action=export", f"file={tmp_path / 'x.csv'}",
                             f"storage={url}"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "exported 0 record(s)" in result.stdout
