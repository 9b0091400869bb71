"""Deploy: the exported model folder, written, loaded and evaluated (:mod:`.exported`), predictions on
images (:mod:`.predict`), and the ONNX copy checked against it (:mod:`.onnx_export`) with its torch-free
predictor (:mod:`.onnx_predict`)."""

from automl.deploy.exported import (
    CONFIG_FILE,
    EVAL_BATCH_SIZE,
    TEST_FILE,
    WEIGHTS_FILE,
    ExportedModel,
    ExportError,
    export_model,
    load_exported,
    predict_proba,
    read_config,
    save_weights,
)
from automl.deploy.onnx_export import ExportCheckError, check_onnx, export_onnx
from automl.deploy.predict import PredictError, Predictions, default_out, find_images, predict_images

__all__ = ["CONFIG_FILE", "EVAL_BATCH_SIZE", "TEST_FILE", "WEIGHTS_FILE", "ExportCheckError", "ExportError",
           "ExportedModel", "PredictError", "Predictions", "check_onnx", "default_out", "export_model", "export_onnx",
           "find_images", "load_exported", "predict_images", "predict_proba", "read_config", "save_weights"]
