"""automl: pick and fine-tune the best pretrained image classifier from a bank of checkpoints.

The same pipeline as ``python -m automl``, from Python::

    import automl

    result = automl.fit(task={"root": "/data/flowers"})          # or automl.fit("task.root=/data/flowers")
    print(result.best_model, result.test_accuracy, result.best_dir)

    model = automl.load(result.best_dir)
    predictions = model.predict("new_photos/")
    predictions.labels, predictions.top_k(3)

Bad input raises :class:`AutomlError` with the one-line message the command line prints.
"""

from automl._api import Model, Result, fit, load, overrides_of
from automl.errors import AutomlError

__version__ = "0.1.0"
__all__ = ["AutomlError", "Model", "Result", "__version__", "fit", "load", "overrides_of"]
