"""How well a partial validation curve predicts the test accuracy its fit ends at (issue 36.2), held out.

    python -m benchmarks.studies.learning_curves [choose_on=[classic,modern,budget,rough]] [docs=true]

The shipped meta-benchmark's 756 complete curves (30 epochs of the default recipe, validation accuracy after
each) and final test accuracies. Estimators of the final test accuracy from the first k epochs:

* ``last``: the last validation accuracy; ``best``: the best so far (what a pruner compares);
* ``curve:<kind>``: :class:`automl.predictor.curves.CurveModel`, fitted on other banks' curves on other
  targets (bank and target both held out), with its 80% interval.

The kind is chosen on the banks ``choose_on`` (each held out in turn) and reported on the others, the ones
added after the defaults had been chosen (fresh, blind, mobile): MAE in accuracy points per stage k/E and
the share of final accuracies inside the interval. Writes docs/results/learning-curves.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from automl.predictor.curves import KINDS, CurveModel, shipped_curves
from automl.run import markdown_table
from benchmarks._pages import write_page
from benchmarks._script import parse

EPOCHS = (1, 3, 5, 10, 15, 30)  # of 30: 5 is the pipeline's first pruning rung


@dataclass
class Settings:
    choose_on: list[str] = field(default_factory=lambda: ["classic", "modern", "budget", "rough"])
    docs: bool = True  # write docs/results/learning-curves.md


def held_out_errors(data, banks: list[str], kind: str) -> dict[str, dict[int, np.ndarray]]:
    """Per estimator and k: |estimate - final| (points) for every curve of ``banks``, each (bank, target)
    predicted by a model fitted on the other banks' curves on the other targets; ``cover``: 1 where the
    curve model's interval holds the final accuracy."""
    errors: dict[str, dict[int, list[float]]] = {name: {k: [] for k in EPOCHS} for name in ("last", "best", "curve",
                                                                                          "cover")}
    for bank in banks:
        for target in np.unique(data.target[data.bank == bank]):
            model = CurveModel(kind).fit(data.subset((data.bank != bank) & (data.target != target)))
            for i in np.flatnonzero((data.bank == bank) & (data.target == target)):
                curve, final = data.curves[i], data.final[i]
                for k in EPOCHS:
                    estimate = model.estimate(curve[:k], int(data.planned[i]), float(data.chance[i]))
                    errors["last"][k].append(abs(curve[k - 1] - final))
                    errors["best"][k].append(abs(max(curve[:k]) - final))
                    errors["curve"][k].append(abs(estimate.mean - final))
                    errors["cover"][k].append(float(estimate.low <= final <= estimate.high))
    return {name: {k: np.array(v) for k, v in by_k.items()} for name, by_k in errors.items()}


def table(errors: dict[str, dict[int, np.ndarray]], kind: str) -> str:
    rows = [[f"MAE: {name if name != 'curve' else f'curve:{kind}'}", *(f"{errors[name][k].mean():.2f}" for k in EPOCHS)]
            for name in ("last", "best", "curve")]
    rows.append(["80% interval holds (%)", *(f"{100 * errors['cover'][k].mean():.0f}" for k in EPOCHS)])
    return markdown_table(["epochs seen (of 30)", *map(str, EPOCHS)], rows, numbers_right=True)


def main() -> None:
    settings = parse(Settings, __doc__)
    data = shipped_curves()
    banks = sorted(set(data.bank))
    report_on = [bank for bank in banks if bank not in settings.choose_on]
    choice = {kind: held_out_errors(data, settings.choose_on, kind) for kind in KINDS}
    mean_mae = {kind: np.mean([errors["curve"][k].mean() for k in EPOCHS]) for kind, errors in choice.items()}
    chosen = min(mean_mae, key=mean_mae.get)
    reported = held_out_errors(data, report_on, chosen)
    sections = [
        f"Curves: {len(data.curves)} (every model of {len(banks)} banks on {len(set(data.target))} targets, the "
        "default recipe's 30 epochs). Each (bank, target) is predicted by a curve model fitted on the other banks' "
        "curves on the other targets.",
        f"## Choice, on {', '.join(settings.choose_on)}",
        "Mean MAE over the stages: " + ", ".join(f"curve:{kind} {mae:.2f}" for kind, mae in mean_mae.items())
        + f" points; chosen: {chosen}.",
        *(f"### curve:{kind}\n\n{table(errors, kind)}" for kind, errors in choice.items()),
        f"## Held out: {', '.join(report_on)} (banks added after the defaults were chosen), curve:{chosen}",
        table(reported, chosen),
    ]
    text = "\n\n".join(sections)
    print(text)
    if settings.docs:
        print(write_page("learning-curves", "What a partial validation curve says about the final accuracy", text))


if __name__ == "__main__":
    main()
