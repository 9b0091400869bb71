"""A run: the stages in order in one run folder (:mod:`.stages`), what the folder remembers (:mod:`.folder`),
every measured transfer recorded for the next ranking (:mod:`.recorder`) and the report (:mod:`.report`, its
figures :mod:`.figures`, the exported model on the test split :mod:`.evaluation`)."""

from automl.run.folder import (
    RUN_FILE,
    RecordedModel,
    RunRecord,
    read_record,
    record_ranking,
    recorded_ranking,
    write_record,
)
from automl.run.recorder import TrialRecorder, transfer_record
from automl.run.report import markdown_table, write_report
from automl.run.stages import NothingExported, RunResult, StorageError, open_history, run, study_name

__all__ = ["RUN_FILE", "NothingExported", "RecordedModel", "RunRecord", "RunResult", "StorageError", "TrialRecorder",
           "markdown_table", "open_history", "read_record", "record_ranking", "recorded_ranking", "run", "study_name",
           "transfer_record", "write_record", "write_report"]
