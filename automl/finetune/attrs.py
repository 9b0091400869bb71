"""Names of what the search writes on each Optuna trial (user attrs), shared by the modules that read them."""

MODEL_PARAM = "model"  # the trial parameter naming the bank model
ADMITTED = "admitted"  # = the trial's number once the budget check let it run
OVER_BUDGET = "over_budget"  # ended uncounted by the budget check
FAIL_REASON = "fail_reason"  # "<exception type>: <message>" of a trial that raised (it counts)
INTERRUPTED = "interrupted"  # Ctrl-C: failed and queued again (it does not count)
HPARAMS = "hparams"  # every hyperparameter the fit used (sampled, fixed and defaults)
DATA_CONFIG = "data_config"  # the model's input pipeline
WEIGHTS = "weights"  # path of the best-epoch weights (COMPLETE trials)
TEST_PREDICTIONS = "test_predictions"  # path of the .npy of the class given to each test image (COMPLETE trials)
REFIT = "refit"  # on the study: what the refit of the best trial measured and where its files are
RESUMES = "resumes"  # the trial whose fit this one continues (its own number on a first run): names the checkpoint
RESUMED_AT = "resumed_at_epoch"  # the 0-based epoch a retried trial's fit continued at, from the checkpoint
OOM_RETRIES = "oom_retries"  # times the fit ran out of memory and started again with half the batch size
WORKER = "worker"  # "<host>:<pid>" of the worker process that ran the trial
DEVICE = "device"  # the device it trained on (cuda:<i> as the machine numbers its visible GPUs, or cpu)
CHANNELS_LAST = "channels_last"  # whether it trained in NHWC layout (finetune.channels_last, auto: per model)
PRECISION = "precision"  # Lightning's precision it trained in
