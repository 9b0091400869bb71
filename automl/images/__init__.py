"""Images in: a task's files found, checked and split (:mod:`.tasks`, :mod:`.scan`) and summarised
(:mod:`.summary`), decoded the one way every part of automl decodes them (:mod:`.decode`), turned into
the uint8 pixels a model sees and cached (:mod:`.pixels`), and the offline builtin datasets
(:mod:`.synthetic`)."""

from automl.images._portable import is_image_file
from automl.images.decode import BadImageError, decode_image, load_image
from automl.images.pixels import normalize, pixel_batches, pixel_transform, split_pixels, training_config
from automl.images.scan import ImageScan, scan_images
from automl.images.summary import TaskSummary, summarize_task
from automl.images.tasks import SPLITS, Split, Task, TaskError, load_task, materialize_builtin

__all__ = ["SPLITS", "BadImageError", "ImageScan", "Split", "Task", "TaskError", "TaskSummary", "decode_image",
           "is_image_file", "load_image", "load_task", "materialize_builtin", "normalize", "pixel_batches",
           "pixel_transform", "scan_images", "split_pixels", "summarize_task", "training_config"]
