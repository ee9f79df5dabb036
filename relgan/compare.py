"""Did adversarial training help? Seed aggregates of GAN evaluations against MLE under a sweep of decoding
rules (softmax temperature, Caccia et al. 2020; top-k; top-p), on quality-diversity planes, with a dominance rule
fixed in advance.

A point is a model's metrics aggregated over seeds: ``{metric: {"mean", "std", "ci95", "n"}}``. On a plane
(a quality metric and a diversity metric, each with its better direction) point A is *better beyond the
intervals* than B on an axis when their 95% intervals (mean ± ci95; a single seed has none) do not overlap
and A's is on the better side. An MLE decoding rule *dominates* a GAN point when it is at least as good on both
axes (not worse beyond the intervals) and better beyond the intervals on at least one: the frontier is the union
of every rule's. A point whose value on an axis is not finite (the NLL of a truncating rule) takes no part in
that plane.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from scipy import stats

from relgan.decoding import Decoding, family
from relgan.errors import RelganError
from relgan.metrics.aggregate import SeedSummary, summarise_seeds
from relgan.metrics.registry import UNSIGNED, value_of

Summary = SeedSummary
Point = Mapping[str, Summary]


@dataclass(frozen=True)
class Axis:
    key: str  # metric key in the points
    label: str
    higher_is_better: bool

    @classmethod
    def of(cls, key: str, label: str | None = None) -> Axis:
        """The axis of a registered metric value: its direction from relgan.metrics.registry."""
        value = value_of(key)
        return cls(key, label or key, value.higher_is_better)


@dataclass(frozen=True)
class Plane:
    name: str
    quality: Axis
    diversity: Axis


TEXT_PLANES = (
    Plane("bleu", Axis.of("bleu-4", "BLEU-4 (full protocol)"), Axis.of("self-bleu-4", "Self-BLEU-4")),
    Plane("lm", Axis.of("lm_score"), Axis.of("reverse_lm_score")),
    Plane("fed", Axis.of("nll_test", "NLL_test"), Axis.of("fed-minilm", "FED-MiniLM")),
)
SYNTHETIC_PLANES = (
    Plane("oracle", Axis.of("nll_oracle", "NLL_oracle"), Axis.of("nll_test", "NLL_test")),
    Plane("lm", Axis.of("lm_score"), Axis.of("reverse_lm_score")),
    # the exact benchmark (an enumerable oracle): quality is KL(G || oracle), coverage KL(oracle || G)
    Plane("exact", Axis.of("exact_reverse_kl", "KL(G || oracle)"), Axis.of("exact_forward_kl", "KL(oracle || G)")),
)


def dominance_rule(seeds: int) -> str:
    """The rule, as a table states it: with one seed there are no intervals and the means alone decide."""
    if seeds > 1:
        return (
            "Dominated: some MLE point (a decoding rule: temperature, top-k, top-p; or, where computed, MLE reranked "
            "by a trained discriminator) is at least as good on both axes and better on one, beyond the 95% "
            "intervals of the seeds."
        )
    return (
        "Dominated: some MLE point (a decoding rule: temperature, top-k, top-p; or, where computed, MLE reranked by "
        "a trained discriminator) is at least as good on both axes and better on one (one seed: no intervals, the "
        "means alone decide)."
    )


def shared_signatures(records: Iterable[Mapping[str, object]], what: str) -> dict[str, str]:
    """The signature of each metric in ``records``, which all of them must share: values computed differently are
    not put together (a one-line error naming the metric and both signatures). A record without signatures
    (written before they existed) counts as unsigned."""
    found: dict[str, str] = {}
    for record in records:
        signatures = record.get("signatures")
        for name, signature in signatures.items() if isinstance(signatures, dict) else [("*", UNSIGNED)]:
            earlier = found.setdefault(name, signature)
            if earlier != signature:
                raise RelganError(
                    f"{what}: {name} was computed two ways, {earlier} and {signature}; put together "
                    "only values of one signature"
                )
    if "*" in found and len(found) > 1:
        raise RelganError(f"{what}: signed and unsigned records (written before signatures) do not go together")
    return found


def aggregate(records: Iterable[Mapping[str, object]], what: str = "the seeds") -> dict[str, SeedSummary]:
    """Per numeric key, the seed summary (:func:`summarise_seeds`) over the records that have it; the records
    must share every metric's signature (:func:`shared_signatures`)."""
    records = list(records)
    shared_signatures(records, what)
    values: dict[str, list[float]] = {}
    for record in records:
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values.setdefault(key, []).append(float(value))
    return {key: summarise_seeds(v) for key, v in values.items()}


def kendall_tau(pairs: Sequence[tuple[float, float]]) -> float | None:
    """Kendall's tau-b of (x, y) pairs (scipy.stats.kendalltau: ties counted as scipy counts them); None for fewer
    than two pairs or where one side is constant."""
    if len(pairs) < 2:
        return None
    tau = stats.kendalltau([x for x, _ in pairs], [y for _, y in pairs]).statistic
    return None if math.isnan(tau) else float(tau)


def _interval(summary: Summary) -> tuple[float, float]:
    half = summary.get("ci95") or 0.0
    return summary["mean"] - half, summary["mean"] + half


def better_beyond_intervals(a: Summary, b: Summary, axis: Axis) -> bool:
    """Whether ``a`` is better than ``b`` on ``axis`` with their 95% intervals apart."""
    a_low, a_high = _interval(a)
    b_low, b_high = _interval(b)
    return a_low > b_high if axis.higher_is_better else a_high < b_low


def on_plane(point: Point, plane: Plane) -> bool:
    """Whether ``point`` has finite means on both of the plane's axes."""
    return all(
        axis.key in point and math.isfinite(point[axis.key]["mean"]) for axis in (plane.quality, plane.diversity)
    )


def measured_planes(planes: Sequence[Plane], sweep: Mapping[Decoding, Point]) -> list[Plane]:
    """The planes on which some point of the MLE sweep is measured: a benchmark that cannot compute a plane's
    metrics (the exact KLs of a non-enumerable oracle) has no verdict there, rather than "not measured" in every
    row."""
    return [plane for plane in planes if any(on_plane(point, plane) for point in sweep.values())]


def dominates(mle: Point, gan: Point, plane: Plane) -> bool:
    """Whether ``mle`` is at least as good as ``gan`` on both axes and better beyond the intervals on one."""
    axes = (plane.quality, plane.diversity)
    if not (on_plane(mle, plane) and on_plane(gan, plane)):
        return False
    return not any(better_beyond_intervals(gan[a.key], mle[a.key], a) for a in axes) and any(
        better_beyond_intervals(mle[a.key], gan[a.key], a) for a in axes
    )


def worse_means(mle: Point, gan: Point, plane: Plane) -> list[str]:
    """Labels of the axes on which ``mle``'s mean is worse than ``gan``'s (possibly inside the intervals)."""
    worse = []
    for axis in (plane.quality, plane.diversity):
        difference = mle[axis.key]["mean"] - gan[axis.key]["mean"]
        if (difference < 0) if axis.higher_is_better else (difference > 0):
            worse.append(axis.label)
    return worse


def frontier(sweep: Mapping[Decoding, Point], others: Mapping[str, Point] | None = None) -> dict[str, Point]:
    """MLE's points, by label: each decoding rule's, and ``others`` (MLE reranked by a discriminator: "reranked
    alpha=1")."""
    return {**{rule.label: point for rule, point in sweep.items()}, **(others or {})}


def verdicts(
    sweep: Mapping[Decoding, Point],
    gans: Mapping[str, Point],
    planes: Sequence[Plane],
    others: Mapping[str, Point] | None = None,
) -> dict[str, dict]:
    """For each GAN point and plane: the MLE points (decoding rules, and ``others``: :func:`frontier`) that
    dominate it, each with the axes on which its mean is nevertheless worse (inside the intervals); None where a
    metric is missing."""
    mle = frontier(sweep, others)
    result: dict[str, dict] = {}
    for name, gan in gans.items():
        result[name] = {}
        for plane in planes:
            if not on_plane(gan, plane) or not any(on_plane(point, plane) for point in mle.values()):
                result[name][plane.name] = None
            else:
                result[name][plane.name] = [
                    {"decoding": label, "worse_mean_on": worse_means(point, gan, plane)}
                    for label, point in mle.items()
                    if dominates(point, gan, plane)
                ]
    return result


def beyond_frontier(
    sweep: Mapping[Decoding, Point], gan: Point, plane: Plane, others: Mapping[str, Point] | None = None
) -> bool:
    """Whether ``gan`` is better than every MLE point on the plane (:func:`frontier`) on some axis beyond the
    intervals (not merely undominated: worse means inside wide intervals are not beyond)."""
    axes = (plane.quality, plane.diversity)
    points = [point for point in frontier(sweep, others).values() if on_plane(point, plane)]
    return (
        on_plane(gan, plane)
        and bool(points)
        and all(any(better_beyond_intervals(gan[a.key], point[a.key], a) for a in axes) for point in points)
    )


def verdict_line(
    name: str,
    by_plane: Mapping[str, list[dict] | None],
    planes: Sequence[Plane],
    beats_control: Mapping[str, bool] | None = None,
    beyond: Mapping[str, bool] | None = None,
) -> str:
    """'RelGAN(100), last: dominated by MLE at T=0.8, top-p 0.9 on BLEU-4/Self-BLEU-4; not dominated on ...'.
    (A verdict written before decoding rules names temperatures.) With ``beyond`` (plane -> whether the row is
    beyond every MLE rule, :func:`beyond_frontier`) and ``beats_control`` (plane -> whether it dominates its
    control run), a row counts as a gain only where it is beyond the frontier and beats its control."""
    parts = []
    for plane in planes:
        label = f"{plane.quality.label}/{plane.diversity.label}"
        found = by_plane.get(plane.name)
        if found is None:
            parts.append(f"not measured on {label}")
        elif found:
            rules = ", ".join(
                (d["decoding"] if "decoding" in d else f"T={d['temperature']:g}")
                + (
                    f" (its mean {' and '.join(d['worse_mean_on'])} is worse, inside the intervals)"
                    if d["worse_mean_on"]
                    else ""
                )
                for d in found
            )
            parts.append(f"dominated by MLE at {rules} on {label}")
        elif beyond is None or not beyond.get(plane.name):
            parts.append(f"not dominated on {label}")
        elif beats_control is None or plane.name not in beats_control:
            parts.append(f"beyond every MLE rule on {label}")
        elif beats_control[plane.name]:
            parts.append(f"a gain on {label}: beyond every MLE rule, and better than its control")
        else:
            parts.append(
                f"beyond every MLE rule on {label} but no better than its control: no gain to credit to "
                "the discriminator"
            )
    return f"{name}: " + "; ".join(parts)


REAL_TEXT = "real text (held out)"


@dataclass(frozen=True)
class Series:
    """One thing a plane's plot draws: means on the diversity (x) and quality (y) axes with 95% intervals."""

    label: str
    x: list[float]
    y: list[float]
    xerr: list[float]
    yerr: list[float]
    marker: str  # matplotlib's marker
    joined: bool  # points joined by a line (the MLE curve)
    notes: list[str]  # a note beside each point ("" for none; the curve's rules)


CURVES = {
    "temperature": "MLE, temperature T",
    "top-k": "MLE, top-k",
    "top-p": "MLE, top-p",
    "mixed": "MLE, mixed rules",
}
RERANKED = "MLE reranked by a trained D"  # the curve of frontier(others=...) points
COLOURS = 10  # the length of matplotlib's default colour cycle, which gives each drawn series its colour in turn
GAN_SHAPES = ("s", "D", "P", "X", "v")  # a GAN row's marker, by the round of the colour cycle it falls in


def plane_series(
    plane: Plane,
    sweep: Mapping[Decoding, Point],
    gans: Mapping[str, Point],
    real: Point | None = None,
    others: Mapping[str, Point] | None = None,
) -> list[Series]:
    """What a plane's plot draws: MLE's curve of each family of decoding rules (temperature, top-k, top-p), the
    curve of ``others`` (reranked MLE), each GAN point and real text, where both axes were measured and finite; []
    where nothing was."""
    qk, dk = plane.quality.key, plane.diversity.key

    def series(label: str, points: Sequence[Point], marker: str, notes: list[str] | None = None) -> Series:
        return Series(
            label,
            x=[p[dk]["mean"] for p in points],
            y=[p[qk]["mean"] for p in points],
            xerr=[p[dk].get("ci95") or 0 for p in points],
            yerr=[p[qk].get("ci95") or 0 for p in points],
            marker=marker,
            joined=notes is not None,
            notes=notes or [""] * len(points),
        )

    drawn = []
    for kind, label in CURVES.items():
        ordered = sorted(sweep.items(), key=lambda item: (item[0].top_k, item[0].top_p, item[0].temperature))
        curve = [(rule, p) for rule, p in ordered if family(rule) == kind and on_plane(p, plane)]
        if curve:
            drawn.append(series(label, [p for _, p in curve], "o", [rule.label for rule, _ in curve]))
    reranked = [(label, p) for label, p in (others or {}).items() if on_plane(p, plane)]
    if reranked:
        drawn.append(series(RERANKED, [p for _, p in reranked], "^", [label for label, _ in reranked]))
    # matplotlib's colour cycle repeats after 10 series: each later round of GAN rows takes the next shape
    for name, p in gans.items():
        if on_plane(p, plane):
            drawn.append(series(name, [p], GAN_SHAPES[len(drawn) // COLOURS % len(GAN_SHAPES)]))
    if real is not None and on_plane(real, plane):
        drawn.append(series(REAL_TEXT, [real], "*"))
    return drawn


# a plot shows its reference points (MLE's curves, reranked MLE, real text) with their intervals, widened on each
# side by up to this many times their extent to take in the GAN rows; a row whose mean lies beyond that would
# shrink the frontier to a dot (a collapsed generator's KLs are ten times MLE's), so it is drawn on the edge and
# named in a caption
VIEW_SPREAD = 2.0


def _widened(low: float, high: float, times: float) -> tuple[float, float]:
    """A range widened on each side by ``times`` its extent (a point's range, by 5% of its size or of 1)."""
    margin = times * (high - low) if high > low else 0.05 * max(abs(low), 1.0)
    return low - margin, high + margin


def view_limits(drawn: Sequence[Series], spread: float = VIEW_SPREAD) -> tuple[tuple[float, float], ...] | None:
    """The (x, y) ranges a plane's plot shows: every point with its interval, but no farther than ``spread`` times
    the reference points' extent beyond them; None without reference points."""
    reference = [s for s in drawn if s.marker not in GAN_SHAPES]
    if not reference:
        return None
    ranges = []
    for axis in ("x", "y"):
        ends = [(v - e, v + e) for v, e in _points(reference, axis)]
        low, high = min(end for end, _ in ends), max(end for _, end in ends)
        band_low, band_high = _widened(low, high, spread)
        for v, e in _points(drawn, axis):
            if v < band_low:
                low = band_low
            elif v > band_high:
                high = band_high
            else:
                low, high = min(low, max(v - e, band_low)), max(high, min(v + e, band_high))
        ranges.append((low, high))
    return tuple(ranges)


def _points(drawn: Sequence[Series], axis: str) -> list[tuple[float, float]]:
    """Each point's mean and 95% half-width on ``axis`` ("x" or "y")."""
    return [pair for s in drawn for pair in zip(getattr(s, axis), getattr(s, f"{axis}err"), strict=True)]


def onto_view(series: Series, limits: tuple[tuple[float, float], ...]) -> tuple[Series, list[str]]:
    """``series`` with each point whose mean lies outside ``limits`` (:func:`view_limits`) moved onto their edge,
    without its interval; and those points as "label (x, y)", for the plot's caption."""
    (x_low, x_high), (y_low, y_high) = limits
    outside = [not (x_low <= x <= x_high and y_low <= y <= y_high) for x, y in zip(series.x, series.y, strict=True)]
    if not any(outside):
        return series, []

    def onto(values: list[float], low: float, high: float) -> list[float]:
        return [min(max(v, low), high) if out else v for v, out in zip(values, outside, strict=True)]

    def without(errors: list[float]) -> list[float]:
        return [0.0 if out else e for e, out in zip(errors, outside, strict=True)]

    moved = [f"{series.label} ({x:.3g}, {y:.3g})" for x, y, out in zip(series.x, series.y, outside, strict=True) if out]
    return replace(
        series,
        x=onto(series.x, x_low, x_high),
        y=onto(series.y, y_low, y_high),
        xerr=without(series.xerr),
        yerr=without(series.yerr),
    ), moved


def plot_planes(
    sweep: Mapping[Decoding, Point],
    gans: Mapping[str, Point],
    planes: Sequence[Plane],
    prefix: Path,
    title: str,
    real: Point | None = None,
    others: Mapping[str, Point] | None = None,
) -> list[Path]:
    """One PNG per plane (diversity on x, quality on y, 95% intervals as error bars, real text as a star where
    given); [] without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    for plane in planes:
        drawn = plane_series(plane, sweep, gans, real, others)
        if not drawn:
            continue
        limits, off_scale = view_limits(drawn), []
        if limits is not None:
            placed = [onto_view(s, limits) if s.marker in GAN_SHAPES else (s, []) for s in drawn]
            drawn, off_scale = [s for s, _ in placed], [point for _, moved in placed for point in moved]
        columns = 1 + (len(drawn) - 1) // 18  # a verdict with controls draws dozens of rows: the legend goes beside
        fig, axis = plt.subplots(figsize=(6 + 3 * columns, 4.5))
        for s in drawn:
            axis.errorbar(
                s.x,
                s.y,
                xerr=s.xerr,
                yerr=s.yerr,
                marker=s.marker,
                markersize=12 if s.marker == "*" else 6,
                linestyle="-" if s.joined else "none",
                label=s.label,
            )
            for note, x, y in zip(s.notes, s.x, s.y, strict=True):
                if note:
                    axis.annotate(note, (x, y), fontsize=8, textcoords="offset points", xytext=(4, 4))
        better = lambda a: "higher" if a.higher_is_better else "lower"  # noqa: E731
        axis.set_xlabel(f"{plane.diversity.label} ({better(plane.diversity)} is better)")
        axis.set_ylabel(f"{plane.quality.label} ({better(plane.quality)} is better)")
        axis.set_title(title, fontsize=10)
        if limits is not None:
            (x_low, x_high), (y_low, y_high) = limits
            # 5% more, so that points on the edge are drawn whole
            axis.set_xlim(*_widened(x_low, x_high, 0.05))
            axis.set_ylim(*_widened(y_low, y_high, 0.05))
        axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), ncol=columns)
        if off_scale:
            caption = "Off scale, drawn on the edge (x, y): " + "; ".join(off_scale)
            axis.text(0, -0.16, caption, transform=axis.transAxes, fontsize=7, va="top", wrap=True)
        fig.tight_layout()
        path = prefix.with_name(f"{prefix.name}-{plane.name}.png")
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written
