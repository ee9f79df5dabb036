"""Seed aggregation and the dominance rule of the verdict, against hand-computed values."""

import math

import pytest

from relgan.compare import (
    SYNTHETIC_PLANES,
    Axis,
    Plane,
    aggregate,
    dominates,
    kendall_tau,
    measured_planes,
    verdict_line,
    verdicts,
)
from relgan.decoding import Decoding
from relgan.metrics.aggregate import summarise_seeds


@pytest.mark.parametrize("n, quantile", [(2, 12.7062), (3, 4.3027), (5, 2.7764), (10, 2.2622), (31, 2.0423)])
def test_the_interval_uses_the_t_quantiles_of_the_tables(n, quantile):
    """t_{0.975, n-1} as the tables (and scipy's documentation) give it: 12.706 for 1 degree of freedom ..."""
    values = [float(i % 2) for i in range(n)]
    summary = summarise_seeds(values)
    assert summary["ci95"] == pytest.approx(quantile * summary["std"] / math.sqrt(n), rel=1e-4)


def test_seed_summary_by_hand():
    summary = summarise_seeds([1.0, 2.0, 3.0, 4.0])
    std = math.sqrt((1.5**2 + 0.5**2 + 0.5**2 + 1.5**2) / 3)
    assert summary["mean"] == 2.5 and summary["n"] == 4
    assert summary["std"] == pytest.approx(std, rel=1e-12)
    assert summary["ci95"] == pytest.approx(3.18245 * std / 2, rel=1e-5)
    assert summarise_seeds([0.7]) == {"mean": 0.7, "std": None, "ci95": None, "n": 1}
    # a truncating decoder's forward KL: infinite, with no interval rather than a NaN one
    assert summarise_seeds([math.inf, 0.1, math.inf]) == {"mean": math.inf, "std": None, "ci95": None, "n": 3}
    with pytest.raises(ValueError):
        summarise_seeds([])


def test_aggregate_takes_the_numeric_keys_each_record_has():
    stats = aggregate([{"bleu-4": 0.2, "model": "MLE", "ok": True, "mauve": None}, {"bleu-4": 0.4, "fed": 1.0}])
    assert set(stats) == {"bleu-4", "fed"}
    assert stats["bleu-4"]["mean"] == pytest.approx(0.3) and stats["bleu-4"]["n"] == 2
    assert stats["fed"]["n"] == 1


def point(quality, diversity, q_ci=None, d_ci=None):
    return {"bleu-4": {"mean": quality, "ci95": q_ci, "n": 3}, "self-bleu-4": {"mean": diversity, "ci95": d_ci, "n": 3}}


PLANE = Plane("bleu", Axis("bleu-4", "BLEU-4", True), Axis("self-bleu-4", "Self-BLEU-4", False))


def test_dominance_needs_one_axis_better_beyond_the_intervals_and_none_worse():
    gan = point(0.40, 0.30, 0.01, 0.01)
    assert dominates(point(0.45, 0.30, 0.01, 0.01), gan, PLANE)  # better quality, same diversity
    assert dominates(point(0.40, 0.25, 0.01, 0.01), gan, PLANE)  # lower Self-BLEU is better
    assert not dominates(point(0.40, 0.30, 0.01, 0.01), gan, PLANE)  # a tie
    assert not dominates(point(0.45, 0.35, 0.01, 0.01), gan, PLANE)  # better quality bought with diversity
    assert not dominates(point(0.415, 0.30, 0.01, 0.01), gan, PLANE)  # intervals overlap: not better
    assert dominates(point(0.45, 0.305, 0.01, 0.01), gan, PLANE)  # slightly worse, inside the intervals
    assert not dominates(point(0.45, 0.33, 0.01, 0.01), gan, PLANE)  # worse beyond the intervals
    assert not dominates(point(0.35, 0.30, 0.01, 0.01), gan, PLANE)  # the GAN is better


def test_single_seed_points_compare_their_means():
    gan = point(0.40, 0.30)
    assert dominates(point(0.41, 0.30), gan, PLANE)
    assert not dominates(point(0.40, 0.30), gan, PLANE)
    assert not dominates(point(0.41, 0.31), gan, PLANE)


def test_verdict_names_the_dominating_rules_and_what_was_not_measured():
    lm = Plane("lm", Axis("lm_score", "lm_score", False), Axis("reverse_lm_score", "reverse_lm_score", False))
    sweep = {Decoding(0.8): point(0.45, 0.30, 0.01, 0.01), Decoding(1.0): point(0.38, 0.28, 0.01, 0.01),
             Decoding(1.2): point(0.46, 0.305, 0.01, 0.01)}
    found = verdicts(sweep, {"RelGAN(100), last": point(0.40, 0.30, 0.01, 0.01)}, [PLANE, lm])
    assert found == {"RelGAN(100), last": {"bleu": [{"decoding": "T=0.8", "worse_mean_on": []},
                                                    {"decoding": "T=1.2", "worse_mean_on": ["Self-BLEU-4"]}],
                                           "lm": None}}
    line = verdict_line("RelGAN(100), last", found["RelGAN(100), last"], [PLANE, lm])
    assert line == ("RelGAN(100), last: dominated by MLE at T=0.8, T=1.2 (its mean Self-BLEU-4 is worse, inside the "
                    "intervals) on BLEU-4/Self-BLEU-4; not measured on lm_score/reverse_lm_score")
    assert "not dominated on BLEU-4" in verdict_line("x", {"bleu": [], "lm": None}, [PLANE, lm])
    # a verdict written before decoding rules named temperatures
    assert verdict_line("x", {"bleu": [{"temperature": 0.9, "worse_mean_on": []}]}, [PLANE]) == \
        "x: dominated by MLE at T=0.9 on BLEU-4/Self-BLEU-4"


def test_the_frontier_is_the_union_of_every_rules_and_an_infinite_value_takes_no_part():
    """No temperature dominates the GAN point, a top-p rule does; a rule whose value is infinite (a truncated
    model's NLL) neither dominates nor is drawn."""
    gan = point(0.40, 0.30, 0.01, 0.01)
    sweep = {Decoding(0.8): point(0.45, 0.36, 0.01, 0.01), Decoding(1.0): point(0.38, 0.28, 0.01, 0.01),
             Decoding(top_p=0.9): point(0.43, 0.30, 0.01, 0.01), Decoding(top_k=5): point(0.50, math.inf, 0.01, 0.01)}
    found = verdicts(sweep, {"gan": gan}, [PLANE])
    assert found == {"gan": {"bleu": [{"decoding": "top-p 0.9", "worse_mean_on": []}]}}
    without_top_p = {rule: p for rule, p in sweep.items() if rule.top_p == 1}
    assert verdicts(without_top_p, {"gan": gan}, [PLANE]) == {"gan": {"bleu": []}}
    from relgan.compare import plane_series

    labels = [(s.label, s.notes) for s in plane_series(PLANE, sweep, {})]
    assert labels == [("MLE, temperature T", ["T=0.8", "T=1"]), ("MLE, top-p", ["top-p 0.9"])]


def test_a_row_beyond_the_frontier_is_a_gain_only_where_it_beats_its_control():
    """SeqGAN's row is dominated by no MLE rule; its control (the discriminator's signal removed) got as far on
    one plane, so only the other plane's result can be credited to the discriminator."""
    from experiments.reproduce import against_control

    lm = Plane("lm", Axis("lm_score", "lm_score", False), Axis("reverse_lm_score", "reverse_lm_score", False))
    row = {**point(0.40, 0.30, 0.01, 0.01), **{k: v for k, v in _lm(3.0, 5.0).items()}}
    gans = {"SeqGAN, last": row, "SeqGAN control, last": {**point(0.40, 0.30, 0.01, 0.01), **_lm(3.5, 5.0)}}
    beats = against_control("SeqGAN, last", gans, [PLANE, lm])
    assert beats == {"bleu": False, "lm": True}
    assert against_control("RelGAN(10), last", {"RelGAN(10), last": row}, [PLANE, lm]) is None
    line = verdict_line("SeqGAN, last", {"bleu": [], "lm": []}, [PLANE, lm], beats, {"bleu": True, "lm": True})
    assert line == ("SeqGAN, last: beyond every MLE rule on BLEU-4/Self-BLEU-4 but no better than its control: no "
                    "gain to credit to the discriminator; a gain on lm_score/reverse_lm_score: beyond every MLE "
                    "rule, and better than its control")
    # not dominated is not beyond: worse means inside wide intervals are no gain, whatever the control did
    assert verdict_line("SeqGAN, last", {"bleu": [], "lm": []}, [PLANE, lm], beats, {"bleu": False, "lm": False}) \
        == "SeqGAN, last: not dominated on BLEU-4/Self-BLEU-4; not dominated on lm_score/reverse_lm_score"


def test_beyond_the_frontier_means_better_than_every_rule_on_some_axis_beyond_the_intervals():
    from relgan.compare import beyond_frontier

    sweep = {Decoding(0.8): point(0.45, 0.36, 0.01, 0.01), Decoding(1.0): point(0.38, 0.28, 0.01, 0.01)}
    assert beyond_frontier(sweep, point(0.46, 0.30, 0.01, 0.01), PLANE)  # beats T=0.8 on diversity, T=1 on quality
    assert not beyond_frontier(sweep, point(0.40, 0.30, 0.05, 0.05), PLANE)  # undominated, but inside the intervals
    assert not beyond_frontier({}, point(0.46, 0.30, 0.01, 0.01), PLANE)


def _lm(score: float, reverse: float) -> dict:
    return {"lm_score": {"mean": score, "ci95": 0.01}, "reverse_lm_score": {"mean": reverse, "ci95": 0.01}}


def test_kendall_tau_by_hand_and_as_scipy_documents_it():
    assert kendall_tau([(1, 10), (2, 20), (3, 30)]) == 1.0
    assert kendall_tau([(1, 30), (2, 20), (3, 10)]) == -1.0
    assert kendall_tau([(1, 1), (2, 3), (3, 2)]) == pytest.approx(1 / 3)  # 2 concordant, 1 discordant
    # scipy.stats.kendalltau's documented example (tau-b with ties)
    pairs = list(zip([12, 2, 1, 12, 2], [1, 4, 7, 1, 0], strict=True))
    assert kendall_tau(pairs) == pytest.approx(-0.47140452079103173)
    assert kendall_tau([(1, 1), (1, 2)]) is None and kendall_tau([(1, 1)]) is None


def test_every_plane_reads_each_metric_in_its_direction():
    from relgan.compare import SYNTHETIC_PLANES, TEXT_PLANES

    lower_is_better = {"self-bleu-4", "lm_score", "reverse_lm_score", "nll_oracle", "nll_test", "fed-minilm",
                       "exact_reverse_kl", "exact_forward_kl"}
    for plane in (*TEXT_PLANES, *SYNTHETIC_PLANES):
        for axis in (plane.quality, plane.diversity):
            assert axis.higher_is_better == (axis.key not in lower_is_better), (plane.name, axis.key)


def test_the_rule_says_what_decides_with_one_seed():
    from relgan.compare import dominance_rule

    assert "beyond the 95% intervals" in dominance_rule(3)
    assert "beyond" not in dominance_rule(1) and "one seed" in dominance_rule(1)


def _point(**means: float) -> dict:
    return {key: {"mean": mean, "std": None, "ci95": None, "n": 1} for key, mean in means.items()}


def test_each_plane_draws_the_mle_curve_the_gans_and_real_text_on_its_own_axes():
    from relgan.compare import REAL_TEXT, TEXT_PLANES, plane_series

    bleu_plane, lm_plane = TEXT_PLANES[0], TEXT_PLANES[1]
    sweep = {Decoding(1.0): _point(**{"bleu-4": 0.31, "self-bleu-4": 0.49}),
             Decoding(0.7): _point(**{"bleu-4": 0.42, "self-bleu-4": 0.73})}
    gans = {"RelGAN(100), last": _point(**{"bleu-4": 0.33, "self-bleu-4": 0.53, "lm_score": 3.4})}
    real = _point(**{"bleu-4": 0.334, "self-bleu-4": 0.417, "lm_score": 3.43, "reverse_lm_score": 5.36})
    curve, gan, text = plane_series(bleu_plane, sweep, gans, real)
    assert (curve.x, curve.y, curve.notes, curve.joined) == ([0.73, 0.49], [0.42, 0.31], ["T=0.7", "T=1"], True)
    assert (gan.label, gan.x, gan.y, gan.joined) == ("RelGAN(100), last", [0.53], [0.33], False)
    assert (text.label, text.x, text.y, text.joined) == (REAL_TEXT, [0.417], [0.334], False)
    # only real text measured both lm axes; without it the lm plane draws nothing
    assert [s.label for s in plane_series(lm_plane, sweep, gans, real)] == [REAL_TEXT]
    assert plane_series(lm_plane, sweep, gans) == []


def test_reranked_mle_joins_the_frontier():
    """A GAN point beyond every decoding rule is dominated by, and not beyond, a reranked MLE point."""
    from relgan.compare import RERANKED, beyond_frontier, plane_series

    sweep = {Decoding(0.8): point(0.45, 0.36, 0.01, 0.01), Decoding(1.0): point(0.38, 0.28, 0.01, 0.01)}
    gan = point(0.46, 0.30, 0.01, 0.01)
    reranked = {"reranked alpha=1": point(0.50, 0.29, 0.01, 0.01)}
    assert beyond_frontier(sweep, gan, PLANE) and not beyond_frontier(sweep, gan, PLANE, reranked)
    assert verdicts(sweep, {"gan": gan}, [PLANE]) == {"gan": {"bleu": []}}
    assert verdicts(sweep, {"gan": gan}, [PLANE], reranked) == {
        "gan": {"bleu": [{"decoding": "reranked alpha=1", "worse_mean_on": []}]}}
    assert (RERANKED, ["reranked alpha=1"]) in [(s.label, s.notes) for s in plane_series(PLANE, sweep, {}, None,
                                                                                         reranked)]


def test_a_benchmark_without_the_exact_metrics_has_no_verdict_on_their_plane():
    """SeqGAN's oracle cannot be enumerated: its sweep has no exact KLs, so the exact plane is left out, not
    reported as "not measured" in every row; the exact benchmark keeps all three planes."""
    def measured(*keys):
        return {key: {"mean": 1.0, "ci95": 0.1, "n": 3} for key in keys}

    common = ("nll_oracle", "nll_test", "lm_score", "reverse_lm_score")
    seqgan = {Decoding(1.0): measured(*common), Decoding(0.8): measured(*common)}
    exact = {Decoding(1.0): measured(*common, "exact_reverse_kl", "exact_forward_kl")}
    assert [plane.name for plane in measured_planes(SYNTHETIC_PLANES, seqgan)] == ["oracle", "lm"]
    assert [plane.name for plane in measured_planes(SYNTHETIC_PLANES, exact)] == ["oracle", "lm", "exact"]


def test_every_series_of_a_crowded_plot_has_its_own_colour_and_marker():
    """matplotlib colours the series in turn from a cycle of 10: with more rows than that (a verdict with controls
    draws dozens), a GAN row must differ from the series of the same colour by its marker."""
    from relgan.compare import COLOURS, plane_series

    plane = SYNTHETIC_PLANES[0]

    def measured(value):
        return {key: {"mean": value, "ci95": 0.01, "n": 3} for key in ("nll_oracle", "nll_test")}

    sweep = {Decoding(t): measured(t) for t in (0.8, 1.0, 1.2)}
    gans = {f"GAN {i}": measured(1.0 + i / 100) for i in range(23)}
    drawn = plane_series(plane, sweep, gans, real=measured(0.9), others={"reranked alpha=1": measured(0.95)})
    assert len(drawn) == 1 + 1 + 23 + 1  # the temperature curve, the reranked curve, the GAN rows, real text
    looks = [(index % COLOURS, series.marker) for index, series in enumerate(drawn)]
    assert len(set(looks)) == len(looks)


def test_a_plot_keeps_the_frontier_in_view_and_moves_rows_far_beyond_it_onto_its_edge():
    """A collapsed row (KLs ten times MLE's) must not shrink the frontier to a dot: the view takes in every point
    with its interval, up to twice MLE's extent beyond MLE's points; a row whose mean lies past that sits on the
    edge, without its interval, and is named in the caption with its values."""
    from relgan.compare import GAN_SHAPES, Series, onto_view, view_limits

    def row(label, x, y, shape, xerr=0.05):
        return Series(label, x=[x], y=[y], xerr=[xerr], yerr=[0.2], marker=shape, joined=False, notes=[""])

    curve = Series("MLE", x=[1.0, 1.2], y=[2.0, 2.4], xerr=[0.0, 0.0], yerr=[0.1, 0.1], marker="o", joined=True,
                   notes=["T=1", "T=1.2"])
    near, far = row("near", 1.3, 2.0, GAN_SHAPES[0]), row("far", 9.0, 0.5, GAN_SHAPES[1], xerr=20.0)
    (x_range, y_range) = view_limits([curve, near])
    assert [*x_range, *y_range] == pytest.approx([1.0, 1.35, 1.8, 2.5])  # as matplotlib would scale it
    (x_range, y_range) = view_limits([curve, near, far])
    assert [*x_range, *y_range] == pytest.approx([1.0, 1.6, 0.7, 2.5])  # 1.2 + 2 * 0.2 and 1.9 - 2 * 0.6
    moved, caption = onto_view(far, (x_range, y_range))
    assert [*moved.x, *moved.y, *moved.xerr, *moved.yerr] == pytest.approx([1.6, 0.7, 0.0, 0.0])
    assert caption == ["far (9, 0.5)"]
    assert onto_view(near, (x_range, y_range)) == (near, [])
    assert view_limits([near, far]) is None
