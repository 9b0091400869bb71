"""``python -m automl.predict model=<dir> images=<folder, file or list> [out=<csv>] [top_k=3] [batch_size=64]
[device=auto] [max_image_pixels=N]``: classify images with an exported model (:mod:`automl.deploy.predict`)."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from automl._cli import run_command
from automl.settings import CONF_DIR, PredictSettings


def predict_command(settings: PredictSettings):
    """What the command does with its settings: the CSV by default next to the model, not here."""
    from automl.deploy import default_out, load_exported, predict_images  # torch and timm: after --help

    out = Path(settings.out) if settings.out else default_out(settings.model, settings.images)
    predictions = predict_images(load_exported(settings.model), settings.images, batch_size=settings.batch_size,
                                 device=settings.device, max_pixels=settings.max_image_pixels, out=out,
                                 top_k=settings.top_k)
    return predictions, out


def per_class_table(predictions) -> Table:
    """Precision, recall and F1 (percent) per class, and how many true images it has: 80 columns."""
    table = Table(title=f"per class: accuracy {predictions.accuracy:.1f}%, balanced {predictions.balanced_accuracy:.1f}%")
    for column in ("class", "precision %", "recall %", "F1 %", "images"):
        table.add_column(column, justify="left" if column == "class" else "right", overflow="fold")
    for row in predictions.per_class():
        table.add_row(row["class"], f"{row['precision']:.1f}", f"{row['recall']:.1f}", f"{row['f1']:.1f}",
                      str(row["support"]))
    return table


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="predict")
def main(cfg: DictConfig) -> None:
    predictions, out = run_command(lambda: predict_command(OmegaConf.to_object(cfg)),
                                   hint="python -m automl.predict --help shows the settings")
    if len(predictions.paths) == 1:
        print(f"{predictions.paths[0]}: {predictions.labels[0]} ({100 * predictions.confidence[0]:.1f}%)")
    print(f"predictions: {out}")
    if predictions.targets is not None:
        Console(width=80).print(per_class_table(predictions))
        print(f"accuracy: {predictions.accuracy:.4f}")


if __name__ == "__main__":
    main()
