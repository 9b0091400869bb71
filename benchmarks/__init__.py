"""The research around automl, kept out of the installed package: it imports automl as a user does.

* :mod:`benchmarks.metabench` — the meta-benchmark that chose automl's defaults: its data built
  (``bench.mode=build``; the predictor's shipped copy is ``automl/predictor/metabench``), every ranking
  method judged held out (``bench.mode=ranking``) and the pipeline's model against brute force
  (``bench.mode=end_to_end``);
* ``benchmarks/speed/`` — speed scripts (medians and ratios measured in one run);
* ``benchmarks/studies/`` — the one-off studies a documented figure rests on.

``python -m automl.bench`` (or ``python -m benchmarks``) from a checkout runs the meta-benchmark; every
script writes the page of ``docs/`` that holds its figures.
"""
