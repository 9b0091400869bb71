"""The console's ranking table fits 80 columns without cutting a model's name (``resnet_textur…``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console

from automl.bank import BankEntry, read_bank
from automl.images import Split, Task
from automl.rank import RankedModel, Ranking, ranking_table

LONG = "resnet_textures_pretrained_for_sixty_epochs_on_noisy_labels"


def entry(name: str) -> BankEntry:
    source = {"name": "textures_with_a_long_source_name", "num_images": 10, "num_classes": 2}
    return read_bank("b", [{"name": name, "arch": "test_resnet", "weights": "timm", "num_classes": 0,
                            "source": source}], None).entries[0]


def test_long_names_wrap_within_80_columns():
    empty = Split((), np.zeros(0, dtype=np.int64))
    task = Task("digits", ("0", "1"), dict.fromkeys(("train", "val", "test"), empty), None, "f" * 16, Path("."), 8)
    models = [RankedModel(entry(f"{LONG}_{i}"), {"linear": 91.25, "knn": 88.5}, {}, {}, {}, 95.0 - i, 90.0, 99.0)
              for i in range(3)]
    console = Console(width=80, record=True)
    console.print(ranking_table(Ranking(task, models, ["linear", "knn"], "meta-benchmark")))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80 and not any("…" in line for line in lines)
    model_column = "".join(line.split("│")[2].strip() for line in lines if line.startswith("│"))
    assert all(f"{LONG}_{i}" in model_column for i in range(3))
