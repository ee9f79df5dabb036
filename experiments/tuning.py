"""Equal tuning for the verdict (experiments/reproduce.py --tune-mle, --tune-gan): a grid of config settings per
family, the same number of trials for MLE and for every GAN row, each trial chosen on the validation values of
relgan/selection.py alone, never on the test split or the reported samples.

A grid is ``KEY=V1,V2[;KEY=V1,V2...]``; its trials are every combination of the values (the Cartesian product).
A row's trial is chosen once for all seeds: the one whose mean over the seeds of its best selection value is best
(the earliest on ties), so that a lucky seed cannot choose its own setting. GAN trials are chosen by the GAN's own
rule, or (``GAN_RULES["validation-nll"]``) by MLE's, the lowest validation NLL, which its evaluations also report:
the GAN rule on the synthetic benchmarks, NLL_oracle, rewards sharpening, which MLE's does not. A chosen numeric
value that is the
smallest or largest its key was tried at is reported (``grid_edges``): the grid did not bracket the optimum, and a
wider one may find a better setting.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from statistics import fmean
from typing import Any

from relgan import selection
from relgan.errors import RelganError
from relgan.metrics import registry

# how GAN trials are chosen: --tune-gan-by NAME -> the selection phase whose rule scores their evaluations
GAN_RULES = {"selection": "adversarial", "validation-nll": "mle"}


def parse_grid(text: str, flag: str) -> list[list[str]]:
    """The trials of ``text`` (``KEY=V1,V2;KEY=...``) as override lists, in order; one empty trial for ''."""
    if not text:
        return [[]]
    axes = []
    for part in text.split(";"):
        key, _, values = part.partition("=")
        if not key.strip() or not values.strip() or "" in [v.strip() for v in values.split(",")]:
            raise RelganError(f"{flag} {text!r}: give KEY=V1,V2[;KEY=V1,V2...], e.g. mle.lr=0.01,0.005")
        axes.append([f"{key.strip()}={value.strip()}" for value in values.split(",")])
    keys = [axis[0].split("=")[0] for axis in axes]
    if len(set(keys)) != len(keys):
        raise RelganError(f"{flag} {text!r}: each key once")
    return [list(trial) for trial in itertools.product(*axes)]


def trial_name(run_name: str, trial: int, trials: int, mle_trial: int | None = None) -> str:
    """The run of one trial: the run's own name when there is one trial (runs without tuning are reused). A GAN
    trial's name also carries the MLE trial it starts from (``-m<k>``), so that a wider grid whose choice of MLE
    trial differs trains its GAN runs beside the earlier ones, and reuses those that start from the same MLE."""
    if trials == 1:
        return run_name
    return f"{run_name}-t{trial}" if mle_trial is None else f"{run_name}-m{mle_trial}-t{trial}"


def validation_value(records: Sequence[dict[str, Any]], phase: str, judged_as: str | None = None) -> float:
    """Higher is better: the best selection value (relgan.selection.score) of a run's ``phase`` evaluations, by the
    rule of phase ``judged_as`` (default: ``phase``'s own)."""
    rows = [r for r in records if r["phase"] == phase and "restored_best" not in r]
    rule = judged_as or phase
    return selection.score(selection.best(rows, rule), rule)


def choose(values: Sequence[Sequence[float]]) -> tuple[int, list[float]]:
    """The chosen trial of ``values`` [seed][trial] (higher is better) and each trial's mean over the seeds."""
    means = [fmean(seed[trial] for seed in values) for trial in range(len(values[0]))]
    return means.index(max(means)), means


def run_trials(
    runs_of_seed: dict[int, dict[str, tuple[str, list[str]]]],
    mle_grid: list[list[str]],
    gan_grid: list[list[str]],
    obtain: Callable[[str, str, list[str], str], dict[str, Any]],
    gan_rule: str = "selection",
) -> tuple[dict[tuple[int, str], list[dict[str, Any]]], dict[str, int], dict[str, list[float]]]:
    """Every trial of every row of every seed (``runs_of_seed``: seed -> row -> (run name, overrides), "MLE" first),
    by ``obtain(row, run name, overrides, MLE run name)``, which trains or reads one run ({"records": ...}); a GAN
    trial starts from the chosen MLE trial of its seed, with that trial's settings, and is chosen by ``gan_rule``
    (a key of GAN_RULES). Returns the runs by (seed, row), per trial; the chosen trial of each row; and, where there
    was a choice, each trial's mean validation value by row."""
    seeds, trials = list(runs_of_seed), len(mle_grid)
    trained: dict[tuple[int, str], list[dict[str, Any]]] = {}
    chosen: dict[str, int] = {}
    values: dict[str, list[float]] = {}
    for model in runs_of_seed[seeds[0]]:
        base, grid = ([], mle_grid) if model == "MLE" else (mle_grid[chosen["MLE"]], gan_grid)
        for seed in seeds:
            run_name, overrides = runs_of_seed[seed][model]
            mle_run = trial_name(runs_of_seed[seed]["MLE"][0], chosen.get("MLE", 0), trials)
            trained[seed, model] = [
                obtain(model, trial_name(run_name, k, trials, chosen.get("MLE")), [*overrides, *base, *trial], mle_run)
                for k, trial in enumerate(grid)
            ]
        chosen[model] = 0
        if trials > 1:
            phase, rule = ("mle", "mle") if model == "MLE" else ("adversarial", GAN_RULES[gan_rule])
            chosen[model], values[model] = choose(
                [[validation_value(run["records"], phase, rule) for run in trained[seed, model]] for seed in seeds])
    return trained, chosen, values


def _parsed(settings: Sequence[str]) -> list[dict[str, str]]:
    """Each trial's ``KEY=V`` settings (space-separated) as a dict."""
    return [dict(item.split("=", 1) for item in setting.split()) for setting in settings]


def ascending(settings: Sequence[str]) -> list[int]:
    """The trials' indices in ascending order of their values, key by key (a grid is tried in the order it was
    written, which run names keep; a table reads better sorted). A categorical key keeps its written order."""
    trials = _parsed(settings)

    def rank(key: str, value: str) -> float:
        try:
            return float(value)
        except ValueError:
            return float([trial[key] for trial in trials].index(value))

    return sorted(range(len(trials)), key=lambda k: tuple(rank(key, v) for key, v in trials[k].items()))


def grid_edges(settings: Sequence[str], chosen: int) -> list[str]:
    """The chosen trial's numeric values that lie at the edge of what their key was tried at, e.g.
    ``["mle.lr=0.005 (the smallest tried)"]``; ``settings`` are the trials as space-separated ``KEY=V`` settings."""
    trials = _parsed(settings)
    edges = []
    for key, value in trials[chosen].items():
        try:
            tried = sorted({float(trial[key]) for trial in trials})
        except ValueError:
            continue  # a categorical key (a loss, an algorithm) has no edge
        if len(tried) > 1 and float(value) in (tried[0], tried[-1]):
            edges.append(f"{key}={value} (the {'smallest' if float(value) == tried[0] else 'largest'} tried)")
    return edges


def signature(mle_grid: str, gan_grid: str, trials: int, gan_rule: str = "selection") -> str:
    """The tuning signature of a results table: trials per row, both grids, and how GAN trials were chosen where
    not by the GAN's own rule."""
    grids = f"mle:{mle_grid or 'config'}", f"gan:{gan_grid or 'config'}"
    rule = [f"gan-by:{gan_rule}"] if trials > 1 and gan_rule != "selection" else []
    return registry.sign("tuning", f"trials-per-row:{trials}", *grids, *rule)


def description(mle_grid: str, gan_grid: str, trials: int, synthetic: bool, gan_rule: str = "selection") -> str:
    """The tuning rule, as a results table states it."""
    if trials == 1:
        return ("one trial per row for MLE and every algorithm: the config's settings (the papers'), no search; each "
                "beta_max is a row of its own, not a choice among them")
    gan = selection.rule(GAN_RULES[gan_rule], synthetic)
    return (f"{trials} trials per row for MLE ({mle_grid}) and for every algorithm and control ({gan_grid}); each "
            f"row's trial chosen once for all seeds by the mean over the seeds of its best validation value (MLE: "
            f"{selection.rule('mle', synthetic)}; GAN: {gan}); the GAN trials start from the chosen MLE trial")
