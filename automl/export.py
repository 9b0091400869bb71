"""``python -m automl.export model=<run>/best [format=onnx] [opset=18]``: a deployable copy of an exported
model, checked against it (:func:`automl.deploy.export_onnx`)."""

from __future__ import annotations

import json

import hydra
from omegaconf import DictConfig, OmegaConf

from automl._cli import run_command
from automl.deploy.onnx_export import export_onnx
from automl.settings import CONF_DIR, ExportSettings


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="export")
def main(cfg: DictConfig) -> None:
    settings: ExportSettings = OmegaConf.to_object(cfg)
    out = run_command(lambda: export_onnx(settings.model, settings.opset),
                      hint="python -m automl.export --help shows the settings")
    check = json.loads((out / "check.json").read_text())
    print(f"{out / 'model.onnx'} (opset {check['opset']}): checked on {check['images']} test image(s), max "
          f"probability difference {check['max_abs_probability_difference']:.1e}, top-1 identical "
          f"{check['top1_identical']}\nrun it without automl: python {out / 'predict.py'} images=<folder or image>")


if __name__ == "__main__":
    main()
