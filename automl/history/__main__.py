"""``python -m automl.history [action=list|export|import] [file=F.csv] [storage=URL]``: the measured
transfers in the ``storage`` database, listed, or shared between machines as CSV files."""

from __future__ import annotations

from collections.abc import Sequence

import hydra
import sqlalchemy as sa
from omegaconf import DictConfig, OmegaConf

from automl._cli import run_command
from automl._storage import redact_url
from automl.history.records import HistoryError, TransferRecord
from automl.history.store import History
from automl.settings import CONF_DIR, HistorySettings


def print_records(records: Sequence[TransferRecord]) -> None:
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


def run(settings: HistorySettings) -> None:
    try:
        with History(settings.storage) as history:
            if settings.action == "export":
                count = history.export_csv(settings.file)
                print(f"exported {count} record(s) to {settings.file}")
            elif settings.action == "import":
                count = history.import_csv(settings.file)
                print(f"imported {count} new record(s) from {settings.file} into {redact_url(history.url)}")
            else:
                print_records(history.records())
    except (OSError, sa.exc.SQLAlchemyError) as error:
        raise HistoryError(f"storage={redact_url(settings.storage)}: {error}") from error


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="history")
def main(cfg: DictConfig) -> None:
    run_command(lambda: run(OmegaConf.to_object(cfg)), hint="python -m automl.history --help shows the settings")


if __name__ == "__main__":
    main()
