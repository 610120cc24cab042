"""Quality against time: every method's imputation FID against its training seconds on one axis pair, and the
time at which each method's curve first reached each other method's final figure.

A run logs its curve while it trains, at training.drive's evaluation points: `imputation_fid` on a fixed subset
of its own training examples (split train, up to metrics.CURVE_EXAMPLES, the subset GAIN's best-FID selection
uses) and `imputation_fid_test` on a fixed held-out subset (split test: up to CURVE_EXAMPLES examples of the
dataset's test split under the run's missingness process and mask seed, metrics.HeldOutFID) where the dataset has
one with ground truth; each with its step, training seconds and example count. Closed-form methods (MF, mean,
zero) log one point, at their fit. The sweep adds each cell's final evaluated figure as its last point
(sweep.quality_curves); the Compare page draws the curves of the runs it compares (run_curves).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import MisGANError
from .methods import METHODS, Run

CURVE_FIELDS = {"train": "imputation_fid", "test": "imputation_fid_test"}
SPLIT_WORDS = {"train": "the run's own training examples", "test": "held-out examples"}
# A log axis cannot show 0 s: a point logged before a measurable time (a closed-form fit of a few milliseconds)
# is drawn here, and its hover gives the logged value.
LEAST_SECONDS = 0.01

# Series that earlier sweeps named by a variant of a method (docs/reproduction); the methods' own colours are
# their registry entries' (Method.colour: Okabe-Ito, readable by colour-blind people).
VARIANT_COLOURS = {"MisGAN (earlier)": "#56B4E9", "MisGAN (Di on images)": "#F0E442"}


def series_colour(name: str) -> str:
    """A series' colour by its method, the longest method title that begins it ("MisGAN (earlier) (paper)")."""
    colours = {m.title: m.colour for m in METHODS.values()} | VARIANT_COLOURS
    method = max((k for k in colours if name == k or name.startswith(k + " ")), key=len, default=None)
    return colours.get(method or "", "#999999")


@dataclass(frozen=True)
class CurvePoint:
    """An imputation FID with the budget that produced it."""

    step: int
    seconds: float   # training seconds (training.drive's train_time, summed over every session of the run)
    fid: float


@dataclass(frozen=True)
class Curve:
    """One method's imputation FID on one split against training time."""

    method: str                         # the method's title
    name: str                           # the series' name: method and budget, or method and run
    split: str                          # train | test
    n: int | None                       # examples each logged point imputes
    points: tuple[CurvePoint, ...]      # logged while it trained, by step
    step_unit: str = "steps"
    epochs_per_step: float | None = None
    final: CurvePoint | None = None     # its evaluated figure at the end of training (a sweep's cell)
    final_n: int | None = None          # examples the final figure imputes
    label: str = "FID"                  # the feature extractor's label

    @property
    def figure(self) -> float | None:
        """Its final figure: the evaluated one where there is one, else its last logged point."""
        if self.final is not None:
            return self.final.fid
        return self.points[-1].fid if self.points else None

    def all_points(self) -> list[CurvePoint]:
        """Logged points, then the final figure, in the order training reached them."""
        return [*self.points, *([self.final] if self.final is not None else [])]

    def end_point(self) -> CurvePoint | None:
        """Its logged point at the step of its final figure (the last logged point where it has no final figure):
        its figure on the examples its logged points impute."""
        if self.final is None:
            return self.points[-1] if self.points else None
        return next((p for p in reversed(self.points) if p.step == self.final.step), None)

    def first_reaching(self, other: Curve) -> CurvePoint | None:
        """The first of this curve's points at or below `other`'s figure (lower FID is better), each compared on
        the same examples: a logged point against `other`'s logged point at its last step (a logged subset and a
        whole split score differently), the final figure against `other`'s final figure. None if it never got
        there, or if nothing of the two was measured on the same examples."""
        end = other.end_point()
        if end is not None and _same_examples(self.n, other.n):
            hit = next((p for p in self.points if p.fid <= end.fid), None)
            if hit is not None:
                return hit
        other_n = other.final_n if other.final is not None else other.n
        if self.final is None or other.figure is None or not _same_examples(self.final_n, other_n):
            return None
        return self.final if self.final.fid <= other.figure else None

    def epochs(self, step: int) -> float | None:
        return None if self.epochs_per_step is None else round(step * self.epochs_per_step, 2)


def _same_examples(a: int | None, b: int | None) -> bool:
    """Whether two figures of one split imputed the same examples: the first n of a fixed order, so the same n
    (None: a log that did not say, taken as the same)."""
    return a is None or b is None or a == b


def curve_label(split: str, n: int | None) -> str:
    """What a logged imputation-FID curve is, for legends: "imputation FID, split test (500 held-out examples)"."""
    examples = "training examples" if split == "train" else "held-out examples"
    return f"imputation FID, split {split}" + (f" ({n:,} {examples})" if n else f" ({examples})")


def history_labels(history: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Legend names of the imputation-FID fields a run's log holds, by field, with their split and sample count."""
    history = list(history)
    out = {}
    for split, field in CURVE_FIELDS.items():
        points, n = history_curve(history, split)
        if points:
            out[field] = curve_label(split, n)
    return out


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def history_curve(history: Iterable[Mapping[str, Any]], split: str) -> tuple[list[CurvePoint], int | None]:
    """The (step, seconds, imputation FID) points a run logged on `split`, and the examples each imputed (None
    where the log does not say: runs logged before the count was)."""
    field = CURVE_FIELDS[split]
    points, n = [], None
    for r in history:
        if _finite(r.get(field)) and _finite(r.get("step")):
            points.append(CurvePoint(int(r["step"]), float(r["time"]) if _finite(r.get("time")) else 0.0,
                                     float(r[field])))
            n = int(r[f"{field}_n"]) if _finite(r.get(f"{field}_n")) else n
    return sorted(points, key=lambda p: p.step), n


def run_curve(run: Run, split: str = "test", name: str | None = None, label: str = "FID") -> Curve | None:
    """An opened run's logged curve on `split` (None where it logged none there), named by its method and
    budget unless `name` is given."""
    points, n = history_curve(run.history, split)
    if not points:
        return None
    epochs = run.epochs
    per_step = epochs / run.step if epochs is not None and run.step else None
    unit = run.method.step_unit
    name = name or f"{run.method.title} ({run.step:,} {unit})"
    return Curve(run.method.title, name, split, n, tuple(points), unit, per_step, label=label)


def fid_label(dataset: str) -> str:
    """The label of the FID a run of `dataset` logs ("FID (LeNet features)"); "FID" where no extractor is at hand."""
    from .metrics import ExtractorUnavailable, feature_extractor

    try:
        return feature_extractor(dataset).label
    except (ExtractorUnavailable, MisGANError, ValueError, OSError, RuntimeError):
        return "FID"


def run_curves(runs: Mapping[str, Run], split: str = "test") -> tuple[list[Curve], list[str]]:
    """The curves on `split` of runs named by the caller (the Compare page's methods), and the names of those
    that logged none there: a run trained before its method logged that split's points, or on data without a
    held-out split with ground truth."""
    curves, missing = [], []
    for name, run in runs.items():
        label = fid_label(run.spec.dataset)
        curve = run_curve(run, split, f"{name} ({run.step:,} {run.method.step_unit})", label)
        if curve is None:
            missing.append(name)
        else:
            curves.append(curve)
    return curves, missing


def time_to_reach(curves: Sequence[Curve]) -> list[dict[str, Any]]:
    """For each ordered pair of curves (A, B): the training seconds (and step) at which A's curve first reached
    B's final figure, or None where it did not (Curve.first_reaching: every comparison on the same examples).
    Compare curves of one split and missingness."""
    out = []
    for a in curves:
        for b in curves:
            if a is b or b.figure is None:
                continue
            hit = a.first_reaching(b)
            out.append({"method": a.name, "target": b.name, "target_fid": round(b.figure, 2), "split": a.split,
                        "seconds": None if hit is None else round(hit.seconds, 1),
                        "step": None if hit is None else hit.step, "step_unit": a.step_unit})
    return out


def reach_table(curves: Sequence[Curve]) -> str:
    """time_to_reach as a markdown table: a row per method, a column per final figure it is measured against."""
    if len(curves) < 2:
        return ""
    reach = {(r["method"], r["target"]): r for r in time_to_reach(curves)}
    head = "| reaches → | " + " | ".join(f"{c.name}: {c.figure:.1f}" for c in curves if c.figure is not None) + " |"
    lines = [head, "|---|" + "---|" * sum(c.figure is not None for c in curves)]
    for a in curves:
        cells = []
        for b in curves:
            if b.figure is None:
                continue
            if a is b:
                cells.append("-")
                continue
            r = reach[(a.name, b.name)]
            cells.append("not reached" if r["seconds"] is None else f"{r['seconds']:,.1f} s ({r['step']:,} "
                                                                     f"{r['step_unit']})")
        lines.append(f"| {a.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _hover(curve: Curve, p: CurvePoint, final: bool = False) -> str:
    epochs = curve.epochs(p.step)
    n = curve.final_n if final else curve.n
    what = "final figure" if final else "logged point"
    return (f"{what}: imputation {curve.label} {p.fid:.1f}<br>split {curve.split}"
            + (f", {n:,} examples" if n else "")
            + f"<br>{p.step:,} {curve.step_unit}" + ("" if epochs is None else f", {epochs:g} epochs")
            + f", {p.seconds:,.1f} s of training")


def title(curves: Sequence[Curve], what: str = "") -> str:
    """The figure's title: what it shows, on which split and how many examples a point imputes."""
    split = curves[0].split if curves else "test"
    sizes = sorted({c.n for c in curves if c.n})
    n = f", {'/'.join(f'{s:,}' for s in sizes)} examples a point" if sizes else ""
    return f"Imputation FID against training time{': ' + what if what else ''}<br>(split {split}{n})"


def figure(curves: Sequence[Curve], heading: str | None = None, log_x: bool = True) -> Any:
    """The plotly figure: imputation FID against training seconds, a line per method (its logged points), its
    final figure as a star; the budget (steps, epochs, seconds), split and examples in every hover."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for curve in curves:
        colour = series_colour(curve.name)
        if curve.points:
            fig.add_trace(go.Scatter(
                x=[max(p.seconds, LEAST_SECONDS) for p in curve.points], y=[p.fid for p in curve.points],
                mode="lines+markers" if len(curve.points) < 40 else "lines", name=curve.name,
                legendgroup=curve.name, line={"color": colour}, marker={"color": colour, "size": 6},
                hovertext=[_hover(curve, p) for p in curve.points], hovertemplate="%{hovertext}<extra>"
                + curve.name + "</extra>"))
        if curve.final is not None:
            p = curve.final
            fig.add_trace(go.Scatter(
                x=[max(p.seconds, LEAST_SECONDS)], y=[p.fid], mode="markers", legendgroup=curve.name,
                name=curve.name if not curve.points else f"{curve.name}: final", showlegend=not curve.points,
                marker={"color": colour, "symbol": "star", "size": 13, "line": {"width": 1, "color": "white"}},
                hovertext=[_hover(curve, p, final=True)], hovertemplate="%{hovertext}<extra>" + curve.name
                + "</extra>"))
    label = curves[0].label if curves else "FID"
    split = curves[0].split if curves else "test"
    fig.update_layout(title=heading or title(curves), height=440, margin={"l": 10, "r": 10, "t": 60, "b": 10},
                      xaxis_title="training time (seconds" + (", log scale)" if log_x else ")"),
                      yaxis_title=f"imputation FID [{label}], split {split}",
                      legend={"orientation": "h", "yanchor": "top", "y": -0.2, "font": {"size": 10}})
    if log_x:
        fig.update_xaxes(type="log")
    return fig


def write_png(curves: Sequence[Curve], path: Path, heading: str | None = None, log_x: bool = True) -> None:
    """The same figure as a PNG (matplotlib), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for curve in curves:
        colour = series_colour(curve.name)
        if curve.points:
            ax.plot([max(p.seconds, LEAST_SECONDS) for p in curve.points], [p.fid for p in curve.points], "-o",
                    markersize=3, color=colour, label=curve.name)
        if curve.final is not None:
            ax.plot([max(curve.final.seconds, LEAST_SECONDS)], [curve.final.fid], "*", markersize=11, color=colour,
                    markeredgecolor="white", label=None if curve.points else curve.name)
    if log_x:
        ax.set_xscale("log")
    label = curves[0].label if curves else "FID"
    split = curves[0].split if curves else "test"
    ax.set_xlabel("training time (seconds" + (", log scale)" if log_x else ")"))
    ax.set_ylabel(f"imputation FID [{label}], split {split}", fontsize=8)
    ax.set_title((heading or title(curves)).replace("<br>", "\n"), fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.text(0.01, 0.01, "line: logged points; star: final figure", fontsize=6, color="#555555")
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    tmp.replace(path)
