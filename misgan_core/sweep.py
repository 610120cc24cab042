"""Sweeps: the paper's comparison (figures 5 and 9) as a grid of ordinary run folders, methods x missing rates.

    python -m misgan_core sweep --dataset mnist-5k --methods misgan,gain,convac,mf,mean,zero \\
        --mask dropout --rates 0.5 0.8 0.9 --budget paper --out sweeps/mnist-dropout

Each cell is a run folder under OUT/cells/. Running the same command again skips the cells whose results are
in OUT/results.jsonl and resumes the others from their last checkpoint. After the cells, OUT holds results.md
(a table, and for each missingness and split the training seconds at which each method's curve first reached
each other method's final figure), per metric and split a figure against missing rate, and per missingness
and split the quality-against-time figure (curves.py: imputation FID against training seconds, every method on
one axis pair), each as interactive HTML (plotly) and PNG. Every row says what produced it: method, steps,
epochs, training time, device, threads, split; and carries the cell's curve on its split (step, seconds, imputation
FID of the points logged while it trained).

Budgets (`Budget.parse`):
  quick       a few hundred steps per trainable method: a smoke test, not a comparison;
  paper       each method's epochs from the paper (appendix D and H), converted to steps for the data size:
              MisGAN 300 epochs alone, then with its imputer 1000 epochs for MNIST-size images (600 for larger
              ones, as for CelebA);
              GAIN 300 epochs keeping its best-FID weights (appendix H); ConvAC until the imputation FID of its
              selection subset has not improved for PATIENCE selections, capped at the paper's 1000 epochs
              (its CPU learning rate, 1e-2, converges in far fewer: baselines/convac.py);
  minutes=N   every trainable method trains for N minutes (training.drive's train_time: its evaluation
              points and grids left out);
  steps=N     every trainable method takes N steps.
MF, mean and zero fit once in closed form under every budget. Each method's entry in misgan_core.methods holds
its budgets (`quick_steps`, `paper_epochs`, `paper_steps`) and how it makes and checks its cells.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .catalog import open_run
from .curves import CURVE_FIELDS, Curve, CurvePoint, history_curve, reach_table, series_colour, time_to_reach
from .curves import figure as quality_figure
from .curves import title as quality_title
from .curves import write_png as quality_png
from .errors import OptionError
from .evaluation import EVAL_SPLITS, evaluate_opened
from .methods import METHODS, MISGAN, CellContext, Run
from .methods import method as method_named
from .runs import CheckpointError, RunDir, append_jsonl, read_jsonl
from .spec import DataSpec
from .training import StopTraining

RESULTS = "results.jsonl"
METRICS = {"imputation_fid": "imputation FID", "fid": "generation FID", "rmse": "RMSE (missing pixels)"}


@dataclass(frozen=True)
class Budget:
    """How long each trainable method trains in a sweep."""

    kind: str          # quick | paper | minutes | steps
    value: float = 0

    @classmethod
    def parse(cls, text: str) -> Budget:
        name, _, number = text.partition("=")
        if name in ("quick", "paper") and not number:
            return cls(name)
        if name in ("minutes", "steps") and number:
            try:
                value = float(number)
            except ValueError:
                value = -1
            if math.isfinite(value) and value > 0 and (name == "minutes" or value == int(value)):
                return cls(name, value)
        raise OptionError(f"budget must be quick, paper, minutes=N or steps=N (N a finite number > 0); got {text!r}")

    def __str__(self) -> str:
        return self.kind if self.kind in ("quick", "paper") else f"{self.kind}={self.value:g}"

    def plan(self, kind: str, n_examples: int, batch_size: int, n_critic: int = 5,
             image_side: int = 28) -> tuple[int, float | None]:
        """(steps, wall-clock limit in seconds or None) for method `kind` on `n_examples` examples; `n_critic`
        is the batches one step consumes where the method has several (MisGAN's critic updates)."""
        m = method_named(kind)
        if not m.trainable:
            return 1, None
        if self.kind == "steps":
            return int(self.value), None
        if self.kind == "minutes":
            return 10 ** 9, 60.0 * self.value
        if self.kind == "quick":
            return m.quick_steps, None
        return m.paper_steps(n_examples, batch_size, n_critic, image_side), None

    def imputer_start(self, n_examples: int, batch_size: int, n_critic: int = 5) -> int:
        """MisGAN's generator steps before its imputer joins: the paper budget's epochs of MisGAN alone
        (appendix D), none under the other budgets."""
        if self.kind != "paper":
            return 0
        return MISGAN.paper_imputer_start(n_examples, batch_size, n_critic)


def square_side_for(rate: float, height: int, width: int) -> int:
    """The observed square's side whose missing rate 1 - k^2 / (H W) is nearest to `rate` (paper, fig. 9)."""
    k = round(math.sqrt((1.0 - rate) * height * width))
    return max(1, min(k, height, width))


def cell_specs(dataset: str, mask: str, rates: list[float], data_dir: str | None = None, limit: int | None = None,
               mask_seed: int = 0, shape: tuple[int, int, int] = (1, 28, 28)) -> list[tuple[float, DataSpec]]:
    """(nominal rate, spec) for each rate: dropout at that rate, or the square whose side gives it."""
    out = []
    for rate in rates:
        if not 0 < rate < 1:
            raise OptionError(f"missing rates must lie strictly between 0 and 1; got {rate}")
        if mask == "dropout":
            spec = DataSpec(dataset, data_dir, "train", limit, "dropout", missing_rate=float(rate), mask_seed=mask_seed)
        elif mask == "square":
            side = square_side_for(rate, shape[1], shape[2])
            spec = DataSpec(dataset, data_dir, "train", limit, "square", mask_size=side, mask_seed=mask_seed)
        else:
            raise OptionError(f"a sweep varies the missing rate of dropout or square masks; got {mask!r}")
        spec.validate()
        out.append((float(rate), spec))
    return out


@dataclass
class Cell:
    method: str
    rate: float
    spec: DataSpec
    path: Path

    @property
    def id(self) -> str:
        return self.path.name


class Sweep:
    """A sweep folder: its cells, its results log, its table and figures."""

    def __init__(self, out: str | Path, dataset: str, methods: list[str], mask: str, rates: list[float],
                 budget: Budget, arch: str = "fc", device: str = "auto", eval_splits: tuple[str, ...] = EVAL_SPLITS,
                 seed: int = 0, data_dir: str | None = None, limit: int | None = None, mask_seed: int = 0,
                 misgan_options: dict[str, Any] | None = None, log: Callable[[str], None] | None = None,
                 options: Mapping[str, Mapping[str, Any]] | None = None, eval_every: int | None = None):
        """`options`: per method name, the options its cells are made with; `misgan_options` is MisGAN's.
        `eval_every`: steps between the evaluation points (the curves) of every trainable cell this sweep makes
        (None: each method's own; GAIN's points are also its best-FID selections)."""
        if eval_every is not None and (isinstance(eval_every, bool) or not isinstance(eval_every, int)
                                       or eval_every < 1):
            raise OptionError(f"evaluation cadence must be a whole number of steps, 1 or more; got {eval_every!r}")
        for name in methods:
            method_named(name)  # an unknown name fails here, naming the choices
        if not methods:
            raise OptionError("name at least one method")
        for split in eval_splits:
            if split not in EVAL_SPLITS:
                raise OptionError(f"evaluation split must be one of {', '.join(EVAL_SPLITS)}; got {split!r}")
        from .data import DATASETS

        shape = DATASETS[dataset].shape if dataset in DATASETS else (1, 28, 28)
        self.out, self.budget, self.arch, self.device = Path(out), budget, arch, device
        self.eval_splits, self.seed, self.eval_every = tuple(eval_splits), seed, eval_every
        self.options = {name: dict(opts) for name, opts in (options or {}).items()}
        if misgan_options:
            self.options[MISGAN.name] = {**self.options.get(MISGAN.name, {}), **misgan_options}
        self._sizes: dict[DataSpec, int] = {}
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.shape = shape
        specs = cell_specs(dataset, mask, rates, data_dir, limit, mask_seed, shape)
        self.cells = [Cell(m, rate, spec, self.out / "cells" / f"{m}-{spec.slug()}") for rate, spec in specs
                      for m in methods]
        for name in dict.fromkeys(methods):  # an unknown or ill-typed option fails here, before any cell
            METHODS[name].check_cell_options(specs[0][1], self._context(name, specs[0][1]))

    @property
    def results_path(self) -> Path:
        return self.out / RESULTS

    def rows(self) -> list[dict[str, Any]]:
        return [r for r in read_jsonl(self.results_path) if isinstance(r, dict)]

    def done(self, cell: Cell) -> bool:
        return set(self.eval_splits) <= self._evaluated_splits(cell)

    def _evaluated_splits(self, cell: Cell) -> set[str]:
        return {r.get("split") for r in self.rows() if r.get("cell") == cell.id and r.get("budget") == str(self.budget)}

    # -- running ---------------------------------------------------------------------------------

    def run(self, progress: bool = True) -> list[dict[str, Any]]:
        """Train and evaluate every cell not done yet, then write the table and figures."""
        self.out.mkdir(parents=True, exist_ok=True)
        total = len(self.cells)
        started = time.perf_counter()
        for cell in self.cells:  # a cell on disk made with other options stops the sweep before anything trains
            self._compare_cell_options(cell)
        for i, cell in enumerate(self.cells, 1):
            title = f"[{i}/{total}] {METHODS[cell.method].title} · {cell.spec.label()}"
            if self.done(cell):
                self.log(f"{title}: done already, skipped")
                continue
            self.log(f"{title}: {self._train(cell, progress)}")
            self._evaluate(cell)
            elapsed = time.perf_counter() - started
            self.log(f"{title}: evaluated; {elapsed / 60:.1f} min so far")
        rows = self.rows()
        write_report(self.out, rows)
        return rows

    def _train(self, cell: Cell, progress: bool) -> str:
        run = self._open_or_create(cell)
        batch, per_step = run.batch_geometry()
        steps, seconds = self.budget.plan(cell.method, len(run.data), batch, per_step, self.shape[1])
        remaining = max(0, steps - run.step)
        if seconds is not None:
            remaining = 0 if run.seconds >= seconds else steps
        if run.stopped_early:
            remaining = 0  # its selection FID stopped improving: resuming would only repeat the check

        def stop_at_deadline(t: Any) -> None:
            if seconds is not None and t.train_time >= seconds:
                raise StopTraining

        if remaining or run.step == 0:
            run.train(remaining, callback=stop_at_deadline, progress=progress)
        unit = run.method.step_unit
        return (f"trained {run.step:,} {unit} ({run.epochs:.1f} epochs, {run.seconds / 60:.1f} min) "
                f"in {cell.path}")

    def _context(self, name: str, spec: DataSpec) -> CellContext:
        return CellContext(paper_budget=self.budget.kind == "paper", examples=lambda: self._examples(spec),
                           device=self._device(), seed=self.seed, arch=self.arch,
                           options=self.options.get(name, {}), eval_every=self.eval_every)

    def _open_or_create(self, cell: Cell) -> Run:
        path = cell.path
        m = METHODS[cell.method]
        if (path / "config.json").exists():
            run = RunDir(path)
            if run.has_checkpoint:
                try:
                    return m.load_cell(path, self._context(cell.method, cell.spec))
                except CheckpointError as err:
                    raise CheckpointError(f"cell {cell.id} cannot be resumed: {err}") from err
                # run() has checked its options (_compare_cell_options)
            # Made but never checkpointed (stopped in its first steps): nothing to keep, start it again.
            run.delete()
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(self.seed)
        return m.sweep_cell(path, cell.spec, self._context(cell.method, cell.spec))

    def _compare_cell_options(self, cell: Cell) -> None:
        """A cell already on disk must have been made with this sweep's options (Method.check_cell)."""
        METHODS[cell.method].check_cell(cell.path, cell.spec, self._context(cell.method, cell.spec))

    def _examples(self, spec: DataSpec) -> int:
        """How many training examples `spec` holds (counted once per spec)."""
        if spec not in self._sizes:
            self._sizes[spec] = len(spec.load()) if self.budget.kind == "paper" else 0
        return self._sizes[spec]

    def _device(self) -> str:
        from .device import pick_device

        return str(pick_device(self.device).type)

    def _evaluate(self, cell: Cell) -> None:
        run = open_run(cell.path, device=None)
        threads = torch.get_num_threads()
        have = self._evaluated_splits(cell)  # a sweep stopped between two splits wrote the first one already
        for split in [s for s in self.eval_splits if s not in have]:
            result = evaluate_opened(run, split=split)
            row = {"cell": cell.id, "budget": str(self.budget), "method": run.method.title,
                   "kind": cell.method, "dataset": cell.spec.dataset, "mask": cell.spec.mask,
                   "missingness": cell.spec.label(), "rate": cell.rate, "missing_rate": result["missing_rate"],
                   "steps": run.step, "epochs": None if run.epochs is None else round(run.epochs, 2),
                   "train_seconds": round(run.seconds, 1), "device": self._device(), "threads": threads,
                   "split": split, "n": result["n_imputed"], "imputation_fid": result["imputation_fid"],
                   "fid": result["fid"], "rmse": result["rmse"], "label": result["label"],
                   "best_step": run.info.get("best_step"), "time": time.time()}
            if result.get("rmse_conditional_mean") is not None:  # the imputer's estimate of E[x_mis | x_obs]
                row["rmse_conditional_mean"] = result["rmse_conditional_mean"]
            points, n = history_curve(run.history, split)
            row["curve"] = {"split": split, "n": n,
                            "points": [[p.step, round(p.seconds, 3), round(p.fid, 3)] for p in points]}
            if self.options.get(cell.method):
                row["options"] = dict(self.options[cell.method])
            append_jsonl(self.results_path, row)


# ---------------------------------------------------------------------------------------------
# Reports: the table and the figures (the Compare page draws the same figures from the same rows)


def latest_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest row per (cell, budget, split)."""
    out: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        out[(r.get("cell"), r.get("budget"), r.get("split"))] = r
    return sorted(out.values(), key=lambda r: (str(r.get("split")), float(r.get("rate") or 0), str(r.get("method"))))


def budget_words(budget: Any) -> str:
    """A budget as a series label says it: "paper budget" (the paper's epochs, not a figure quoted from the
    paper), "quick budget", "5-minute budget", "400-step budget"."""
    text = str(budget)
    if text.startswith("minutes="):
        return f"{text.split('=', 1)[1]}-minute budget"
    if text.startswith("steps="):
        return f"{text.split('=', 1)[1]}-step budget"
    return f"{text} budget"


def _rate_axis(points: list[float]) -> tuple[float, float]:
    """An x range over the missing rates present, padded so the end markers show whole."""
    lo, hi = min(points), max(points)
    pad = max(0.05, 0.08 * (hi - lo))
    return lo - pad, hi + pad


# Marker shapes by series, and sizes that shrink along the series: where two series share a point, the one
# drawn later sits inside the earlier one and both stay visible.
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star", "cross", "triangle-down")
MPL_SYMBOLS = ("o", "s", "D", "^", "x", "*", "P", "v")


def series(rows: list[dict[str, Any]], metric: str, split: str) -> dict[str, list[tuple[float, float, dict]]]:
    """Per method label, (missing rate, value, row) points of `metric` on `split`, by rate."""
    out: dict[str, list[tuple[float, float, dict]]] = {}
    for r in latest_rows(rows):
        if r.get("split") != split or r.get(metric) is None:
            continue
        name = f"{r['method']} ({budget_words(r.get('budget'))})"
        out.setdefault(name, []).append((float(r.get("missing_rate") or r["rate"]), float(r[metric]), r))
    return {k: sorted(v, key=lambda p: p[0]) for k, v in out.items()}


def figure(rows: list[dict[str, Any]], metric: str, split: str) -> Any:
    """The plotly figure of `metric` against missing rate, one line per method, budgets in the hover."""
    import plotly.graph_objects as go

    fig = go.Figure()
    drawn = series(rows, metric, split)
    for i, (name, pts) in enumerate(drawn.items()):
        fig.add_trace(go.Scatter(
            x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=name,
            line={"color": series_colour(name)},
            marker={"color": series_colour(name), "symbol": SYMBOLS[i % len(SYMBOLS)], "size": max(6, 16 - 2 * i),
                    "line": {"width": 1, "color": "white"}},
            customdata=[[p[2].get("steps"), p[2].get("epochs"), training_seconds(p[2])] for p in pts],
            hovertemplate="%{y:.2f} at %{x:.0%} missing<br>%{customdata[0]} steps, %{customdata[1]} epochs, "
                          "%{customdata[2]} s<extra>" + name + "</extra>"))
    label = next((r.get("label") for r in rows if r.get("label")), "FID")
    y_title = METRICS[metric] if metric == "rmse" else f"{METRICS[metric]} [{label}]"
    fig.update_layout(xaxis_title="missing rate", yaxis_title=y_title, height=380,
                      title=f"{METRICS[metric]} against missing rate (split: {split})",
                      margin={"l": 10, "r": 10, "t": 40, "b": 10}, xaxis={"tickformat": ".0%"})
    rates = sorted({p[0] for pts in drawn.values() for p in pts})
    if rates:
        fig.update_xaxes(range=list(_rate_axis(rates)), tickvals=rates)
    return fig


def _png(rows: list[dict[str, Any]], metric: str, split: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    drawn = series(rows, metric, split)
    for i, (name, pts) in enumerate(drawn.items()):
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", marker=MPL_SYMBOLS[i % len(MPL_SYMBOLS)],
                markersize=max(3, 9 - i), label=name, color=series_colour(name))
    rates = sorted({p[0] for pts in drawn.values() for p in pts})
    if rates:
        ax.set_xlim(*_rate_axis(rates))
        ax.set_xticks(rates)
        ax.set_xticklabels([f"{r:.0%}" for r in rates])
    label = next((r.get("label") for r in rows if r.get("label")), "FID")
    ax.set_xlabel("missing rate")
    ax.set_ylabel(METRICS[metric] if metric == "rmse" else f"{METRICS[metric]} [{label}]", fontsize=8)
    ax.set_title(f"{METRICS[metric]} against missing rate (split: {split})", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    tmp.replace(path)


def training_seconds(row: dict[str, Any]) -> float | None:
    """A row's seconds of training (`train_seconds`; rows written before evaluations were left out of it call
    them `wall_seconds`)."""
    value = row.get("train_seconds", row.get("wall_seconds"))
    return None if value is None else float(value)


def table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of every latest row, with the budget beside every number."""
    lines = ["| split | missingness | method | budget | steps | epochs | training time | imputation FID | "
             "generation FID | RMSE |", "|---|---|---|---|---|---|---|---|---|---|"]

    def num(v: Any, digits: int = 2) -> str:
        return "-" if v is None else f"{v:.{digits}f}"

    for r in latest_rows(rows):
        wall = training_seconds(r)
        lines.append(f"| {r.get('split')} | {r.get('missingness')} | {r.get('method')} | {r.get('budget')} | "
                     f"{r.get('steps'):,} | {num(r.get('epochs'), 1)} | {num(None if wall is None else wall / 60, 1)}"
                     f" min | {num(r.get('imputation_fid'))} | {num(r.get('fid'))} | {num(r.get('rmse'), 4)} |")
    label = next((r.get("label") for r in rows if r.get("label")), "FID")
    options = sorted({", ".join(f"{k}={v}" for k, v in r["options"].items())
                      for r in rows if isinstance(r.get("options"), dict) and r["options"]})
    note = f" MisGAN options: {'; '.join(options)}." if options else ""
    device = ", ".join(sorted({f"{r.get('device')} x{r.get('threads')} threads" for r in rows}))
    return "\n".join(lines) + f"\n\nFID: {label}. Hardware: {device}. train: the run's own examples (the paper's " \
                              f"protocol); test: held-out examples no method trained on.{note}\n"


def training_curves(out: Path, rows: list[dict[str, Any]]) -> dict[str, dict[str, list[tuple[int, float, float]]]]:
    """Per missingness, per method: (step, seconds, imputation FID) points logged while the cells trained (the
    fixed 1000-example subset every method is scored on during training)."""
    curves: dict[str, dict[str, list[tuple[int, float, float]]]] = {}
    for r in latest_rows(rows):
        if r.get("split") != "train":
            continue
        points = [(int(m["step"]), float(m.get("time", 0.0)), float(m["imputation_fid"]))
                  for m in RunDir(out / "cells" / str(r.get("cell"))).read_metrics()
                  if isinstance(m.get("imputation_fid"), (int, float))]
        if points:
            curves.setdefault(str(r.get("missingness")), {})[str(r.get("method"))] = points
    return curves


def _curves_png(name: str, by_method: dict[str, list[tuple[int, float, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=110)
    for method, pts in by_method.items():
        for ax, i in zip(axes, (0, 1), strict=True):
            ax.plot([p[i] / (1 if i == 0 else 60) for p in pts], [p[2] for p in pts], label=method,
                    color=series_colour(method))
    axes[0].set_xlabel("steps (MisGAN: generator steps)")
    axes[1].set_xlabel("training time (minutes)")
    for ax in axes:
        ax.set_ylabel("imputation FID, 1000 training examples", fontsize=8)
        ax.grid(alpha=0.3)
        ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Imputation FID while training: {name}", fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    tmp.replace(path)


def _cell_slug(row: dict[str, Any]) -> str:
    """The data and missingness part of a cell's folder name ("mnist-5k-dropout80")."""
    cell, kind = str(row.get("cell")), str(row.get("kind"))
    return cell[len(kind) + 1:] if cell.startswith(kind + "-") else cell


def quality_curves(out: str | Path | None, rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[Curve]]:
    """Per (missingness, split), by missing rate: each cell's imputation FID against training seconds on that
    split (curves.Curve), its logged points then its final evaluated figure. A row written before rows carried
    their curve takes it from its cell's metrics.jsonl under `out`."""
    found: dict[tuple[str, str], list[Curve]] = {}
    ordered = sorted(latest_rows(rows), key=lambda r: (float(r.get("rate") or 0), str(r.get("split")),
                                                       str(r.get("method"))))
    for r in ordered:
        split = str(r.get("split"))
        if split not in CURVE_FIELDS or not isinstance(r.get("imputation_fid"), (int, float)):
            continue
        if isinstance(r.get("curve"), dict):
            points = [CurvePoint(int(p[0]), float(p[1]), float(p[2])) for p in r["curve"].get("points", [])]
            n = r["curve"].get("n")
        elif out is not None and (Path(out) / "cells" / str(r.get("cell"))).is_dir():
            points, n = history_curve(RunDir(Path(out) / "cells" / str(r.get("cell"))).read_metrics(), split)
        else:
            points, n = [], None
        steps, epochs = r.get("steps"), r.get("epochs")
        per_step = epochs / steps if isinstance(epochs, (int, float)) and steps else None
        kind = METHODS.get(str(r.get("kind")))
        # The final figure is at the end of training: the time of its last logged point where that was its last
        # step (run.seconds also counts the final checkpoint), else its training seconds.
        at_end = [p for p in points if p.step == int(steps or 0)]
        seconds = at_end[-1].seconds if at_end else float(training_seconds(r) or 0.0)
        final = CurvePoint(int(steps or 0), seconds, float(r["imputation_fid"]))
        found.setdefault((str(r.get("missingness")), split), []).append(Curve(
            str(r.get("method")), f"{r.get('method')} ({budget_words(r.get('budget'))})", split, n, tuple(points),
            kind.step_unit if kind is not None else "steps", per_step, final, r.get("n"), str(r.get("label") or "FID")))
    return found


def quality_figure_paths(out: Path, rows: list[dict[str, Any]]) -> dict[tuple[str, str], Path]:
    """Where write_report puts each (missingness, split)'s quality-against-time figure, without the suffix."""
    slugs = {(str(r.get("missingness")), str(r.get("split"))): _cell_slug(r) for r in latest_rows(rows)}
    return {key: out / f"quality-time-{key[1]}-{slugs[key]}" for key in quality_curves(None, rows)}


def reach_section(out: Path | None, rows: list[dict[str, Any]]) -> str:
    """results.md's time-to-reach tables: per missingness and split, the training seconds at which each method's
    curve (its logged points, then its final figure) first reached each other method's final figure."""
    parts = []
    for (missingness, split), found in quality_curves(out, rows).items():
        text = reach_table(found)
        if not text:
            continue
        sizes = ", ".join(f"{c.method} {c.n:,}" for c in found if c.n)
        finals = ", ".join(sorted({f"{c.final_n:,}" for c in found if c.final_n}))
        parts.append(f"### {missingness}, split {split}\n\nTraining seconds at which the row's method first reached "
                     f"the column's final imputation FID, each comparison on the same examples: a logged point "
                     f"against the column's logged point at its last step, a final figure against its final figure "
                     f"(examples per logged point: {sizes or 'none logged'}; per final figure: {finals}).\n\n{text}")
    if not parts:
        return ""
    return "\n## Time to reach\n\n" + "\n".join(parts)


def write_report(out: Path, rows: list[dict[str, Any]]) -> list[Path]:
    """results.md, the figures (HTML and PNG per metric and split; quality against time per missingness and
    split), time-to-reach.json and the training curves in `out`."""
    written = []
    for i, (name, by_method) in enumerate(sorted(training_curves(out, rows).items())):
        path = out / f"curves-{i}.png"
        _curves_png(name, by_method, path)
        written.append(path)
    text = table(rows) + reach_section(out, rows)
    (out / "results.md").write_text(text)
    written.append(out / "results.md")
    found = quality_curves(out, rows)
    reach = [{"missingness": missingness, **r} for (missingness, _), cs in found.items()
             for r in time_to_reach(cs)]
    tmp = out / "time-to-reach.json.tmp"
    tmp.write_text(json.dumps(reach, indent=1) + "\n")
    tmp.replace(out / "time-to-reach.json")
    written.append(out / "time-to-reach.json")
    try:  # plotly is the app's; a sweep run where only the engine is installed (a GPU box) still ends well
        import plotly  # noqa: F401
        interactive = True
    except ImportError:
        interactive = False
        print("note: plotly is not installed, so the interactive HTML figures were left out (the PNGs and "
              "results.md are written); pip install plotly, then rerun the sweep to add them", file=sys.stderr)
    for split in sorted({str(r.get("split")) for r in rows}):
        for metric in METRICS:
            if not series(rows, metric, split):
                continue
            if interactive:
                html = out / f"{metric}-{split}.html"
                figure(rows, metric, split).write_html(str(html), include_plotlyjs="cdn")
                written.append(html)
            _png(rows, metric, split, out / f"{metric}-{split}.png")
            written.append(out / f"{metric}-{split}.png")
    paths = quality_figure_paths(out, rows)
    for (missingness, split), cell_curves in found.items():
        heading = quality_title(cell_curves, missingness)
        stem = paths[(missingness, split)]
        if interactive:
            html = stem.with_name(stem.name + ".html")
            quality_figure(cell_curves, heading).write_html(str(html), include_plotlyjs="cdn")
            written.append(html)
        png = stem.with_name(stem.name + ".png")
        quality_png(cell_curves, png, heading)
        written.append(png)
    return written


def read_sweep(out: str | Path) -> list[dict[str, Any]]:
    """The results rows of a sweep folder ([] when it has none)."""
    return [r for r in read_jsonl(Path(out) / RESULTS) if isinstance(r, dict)]


def find_sweeps(root: str | Path) -> list[Path]:
    """Sweep folders (with a results.jsonl) directly under `root`, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if (p / RESULTS).is_file()]
    return sorted(found, key=lambda p: (p / RESULTS).stat().st_mtime, reverse=True)

