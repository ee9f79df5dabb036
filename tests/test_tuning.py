"""Equal tuning for the verdict (experiments/tuning.py): grids, the validation value of a run, the choice over
seeds by hand, and which runs the trials train and branch from."""

import pytest

from experiments import tuning
from relgan.errors import RelganError


def test_a_grid_is_every_combination_in_order_and_bad_grids_are_one_line():
    assert tuning.parse_grid("", "--tune-mle") == [[]]
    assert tuning.parse_grid("mle.lr=0.01,0.005;mle.batch_size=32,64", "--tune-mle") == [
        ["mle.lr=0.01", "mle.batch_size=32"], ["mle.lr=0.01", "mle.batch_size=64"],
        ["mle.lr=0.005", "mle.batch_size=32"], ["mle.lr=0.005", "mle.batch_size=64"]]
    for bad in ("mle.lr", "mle.lr=", "=1,2", "mle.lr=1,,2", "mle.lr=1;mle.lr=2"):
        with pytest.raises(RelganError, match="--tune-gan"):
            tuning.parse_grid(bad, "--tune-gan")


def test_the_validation_value_is_the_best_evaluation_of_the_phase():
    records = [{"phase": "reference", "nll_oracle": 1.0},
               *({"phase": "mle", "step": s, "val/nll_test": v} for s, v in ((1, 3.0), (2, 2.5), (3, 2.7))),
               {"phase": "mle", "step": 2, "val/nll_test": 2.5, "restored_best": True},
               *({"phase": "adversarial", "step": s, "val/nll_oracle": v} for s, v in ((10, 9.5), (20, 9.1)))]
    assert tuning.validation_value(records, "mle") == -2.5
    assert tuning.validation_value(records, "adversarial") == -9.1
    text = [{"phase": "adversarial", "val/bleu-4": 0.5, "val/self-bleu-4": 0.7},
            {"phase": "adversarial", "val/bleu-4": 0.4, "val/self-bleu-4": 0.3}]
    assert tuning.validation_value(text, "adversarial") == pytest.approx(0.1)


def test_the_chosen_trial_has_the_best_mean_over_seeds_not_the_best_single_seed():
    # trial 0 has the single best value (seed 1), trial 1 the best mean
    chosen, means = tuning.choose([[5.0, 3.0], [0.0, 2.5]])
    assert (chosen, means) == (1, [2.5, 2.75])
    assert tuning.choose([[1.0, 1.0], [2.0, 2.0]])[0] == 0  # a tie goes to the earliest


def test_a_choice_at_the_edge_of_a_numeric_axis_is_reported_and_an_inner_or_categorical_one_is_not():
    lrs = ["mle.lr=0.02", "mle.lr=0.01", "mle.lr=0.005"]
    assert tuning.grid_edges(lrs, 2) == ["mle.lr=0.005 (the smallest tried)"]
    assert tuning.grid_edges(lrs, 0) == ["mle.lr=0.02 (the largest tried)"]
    assert tuning.grid_edges(lrs, 1) == []
    unsorted = ["adversarial.g_lr=1e-4", "adversarial.g_lr=3e-5", "adversarial.g_lr=3e-4"]
    assert tuning.grid_edges(unsorted, 0) == []  # the edge is by value, not by position
    assert tuning.grid_edges(unsorted, 1) == ["adversarial.g_lr=3e-5 (the smallest tried)"]
    product = [f"a.lr={lr} a.loss={loss}" for lr in (1, 2, 3) for loss in ("rsgan", "standard")]
    assert tuning.grid_edges(product, 3) == []  # lr 2, loss standard: inside, and a loss has no edge
    assert tuning.grid_edges(product, 5) == ["a.lr=3 (the largest tried)"]
    assert tuning.grid_edges([""], 0) == []  # one trial: nothing was tuned


def test_trials_train_under_their_names_and_gans_start_from_the_chosen_mle_trial():
    """Two trials of MLE (mle.lr) and of one GAN with its control (adversarial.g_lr), two seeds: MLE's second trial
    is better on validation in both seeds, so every GAN trial branches from it and carries its setting; the GAN's
    and the control's trials are chosen each on their own values."""
    runs_of_seed = {seed: {"MLE": (f"v-s{seed}-mle", [f"run.seed={seed}"]),
                           "GAN": (f"v-s{seed}-gan", [f"run.seed={seed}"]),
                           "GAN, control": (f"v-s{seed}-gan-control", [f"run.seed={seed}"])} for seed in (1, 2)}
    calls = []
    mle_nll = {"mle.lr=0.1": 3.0, "mle.lr=0.2": 2.0}
    gan_nll = {("GAN", "adversarial.g_lr=1"): 9.0, ("GAN", "adversarial.g_lr=2"): 9.5,
               ("GAN, control", "adversarial.g_lr=1"): 9.9, ("GAN, control", "adversarial.g_lr=2"): 9.2}

    def obtain(model, run_name, overrides, mle_run):
        calls.append((model, run_name, overrides, mle_run))
        if model == "MLE":
            return {"records": [{"phase": "mle", "val/nll_test": mle_nll[overrides[-1]]}]}
        return {"records": [{"phase": "adversarial", "val/nll_oracle": gan_nll[model, overrides[-1]]}]}

    trained, chosen, values = tuning.run_trials(runs_of_seed, [["mle.lr=0.1"], ["mle.lr=0.2"]],
                                                [["adversarial.g_lr=1"], ["adversarial.g_lr=2"]], obtain)
    assert chosen == {"MLE": 1, "GAN": 0, "GAN, control": 1}
    assert values["MLE"] == [-3.0, -2.0]
    assert [c[1] for c in calls if c[0] == "MLE"] == ["v-s1-mle-t0", "v-s1-mle-t1", "v-s2-mle-t0", "v-s2-mle-t1"]
    # a GAN trial's run names the MLE trial it starts from, so a grid that chooses another one does not reuse it
    assert [c[1] for c in calls if c[0] == "GAN"] == ["v-s1-gan-m1-t0", "v-s1-gan-m1-t1", "v-s2-gan-m1-t0",
                                                     "v-s2-gan-m1-t1"]
    for model, _, overrides, mle_run in calls:
        if model != "MLE":
            seed = overrides[0].removeprefix("run.seed=")
            assert mle_run == f"v-s{seed}-mle-t1" and overrides[1] == "mle.lr=0.2"
    assert len(trained[2, "GAN, control"]) == 2


def test_gan_trials_chosen_by_validation_nll_where_the_gan_rule_prefers_the_sharper_trial():
    """Trial 1 lowers NLL_oracle (the GAN rule) but raises the validation NLL (MLE's rule): each rule chooses its own,
    and the table says which rule chose."""
    runs_of_seed = {seed: {"MLE": (f"v-s{seed}-mle", []), "GAN": (f"v-s{seed}-gan", [])} for seed in (1, 2)}
    evaluations = {"adversarial.g_lr=1": (9.4, 1.30), "adversarial.g_lr=2": (9.1, 1.35)}

    def obtain(model, run_name, overrides, mle_run):
        if model == "MLE":
            return {"records": [{"phase": "mle", "val/nll_test": 1.3}]}
        oracle, nll = evaluations[overrides[-1]]
        return {"records": [{"phase": "adversarial", "val/nll_oracle": oracle, "val/nll_test": nll}]}

    grids = [["mle.lr=0.1"], ["mle.lr=0.2"]], [["adversarial.g_lr=1"], ["adversarial.g_lr=2"]]
    _, by_own_rule, _ = tuning.run_trials(runs_of_seed, *grids, obtain)
    _, by_nll, values = tuning.run_trials(runs_of_seed, *grids, obtain, gan_rule="validation-nll")
    assert (by_own_rule["GAN"], by_nll["GAN"]) == (1, 0)
    assert values["GAN"] == [-1.30, -1.35]
    text = tuning.description("mle.lr=0.1,0.2", "adversarial.g_lr=1,2", 2, True, "validation-nll")
    assert "GAN: lowest validation NLL (val/nll_test" in text
    assert tuning.signature("a=1,2", "b=1,2", 2, "validation-nll").startswith("tuning|trials-per-row:2|mle:a=1,2|"
                                                                            "gan:b=1,2|gan-by:validation-nll|")
    assert "gan-by" not in tuning.signature("a=1,2", "b=1,2", 2)


def test_trials_sort_by_value_key_by_key_and_names_keep_their_written_order():
    settings = ["lr=3e-5 loss=rsgan", "lr=1e-5 loss=rsgan", "lr=3e-5 loss=standard", "lr=1e-5 loss=standard"]
    assert tuning.ascending(settings) == [1, 3, 0, 2]
    assert tuning.ascending(["g=3e-5", "g=1e-4", "g=3e-6", "g=3e-3"]) == [2, 0, 1, 3]


def test_one_trial_keeps_the_run_names_of_an_untuned_verdict():
    runs_of_seed = {3: {"MLE": ("v-s3-mle", []), "GAN": ("v-s3-gan", [])}}
    names = []
    _, chosen, values = tuning.run_trials(
        runs_of_seed, [[]], [[]], lambda model, name, overrides, mle_run: names.append((name, mle_run)) or {})
    assert names == [("v-s3-mle", "v-s3-mle"), ("v-s3-gan", "v-s3-mle")]
    assert chosen == {"MLE": 0, "GAN": 0} and values == {}


def test_the_trials_table_names_each_row_chosen_at_the_edge_of_its_grid():
    from experiments.reproduce import trials_table

    trials = {"MLE": {"settings": ["mle.lr=0.01", "mle.lr=0.005"], "mean_validation_value": [-2.0, -1.9], "chosen": 1},
              "GAN": {"settings": ["g=1", "g=2", "g=3"], "mean_validation_value": [-9.0, -8.0, -8.5], "chosen": 1}}
    lines = trials_table(trials)
    assert "| MLE | **t1 mle.lr=0.005: -1.9000** | t0 mle.lr=0.01: -2.0000 |" in lines
    assert "| GAN | t0 g=1: -9.0000 | **t1 g=2: -8.0000** | t2 g=3: -8.5000 |" in lines
    assert [line for line in lines if line.startswith("Chosen at the edge")] == [
        "Chosen at the edge of the grid, so the grid did not bracket the best setting and a wider one may find a "
        "better: MLE, mle.lr=0.005 (the smallest tried)."]
    trials["MLE"]["settings"] = ["mle.lr=0.01", "mle.lr=0.005", "mle.lr=0.001"]
    trials["MLE"]["mean_validation_value"].append(-2.1)
    assert not any(line.startswith("Chosen at the edge") for line in trials_table(trials))
    # MaliGAN's control: every trial the same value (its update is exactly 0), so the earliest is chosen by the tie
    trials["GAN"] = {"settings": ["g=1", "g=2"], "mean_validation_value": [-9.0, -9.0], "chosen": 0}
    assert not any(line.startswith("Chosen at the edge") for line in trials_table(trials))
