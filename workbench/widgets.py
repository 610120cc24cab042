"""Widgets the pages share: readable errors, image grids, curves, job panels, data and missingness pickers."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import plotly.graph_objects as go
import streamlit as st
import torch

from misgan_core import DataSpec, MisGANError, Run, catalog, open_run, pick_device
from misgan_core.curves import history_labels
from misgan_core.grids import show_missing, to_pil
from misgan_core.jobs import Job, JobSnapshot
from misgan_core.masks import MASK_PROCESSES

from . import state

log = logging.getLogger("workbench")

MASK_LABELS = {
    "square": "Square observation (one observed k x k square)",
    "dropout": "Independent dropout (each pixel missing at random)",
    "rect": "Rectangle observation (sides 25%-75% of the image)",
    "quadrants": "Quadrant observation (one of four quadrants)",
    "self-masking": "Self-masking, MNAR (a pixel's own value sets its chance to be missing)",
    "censor": "Censoring, MNAR (pixels past a value threshold are missing)",
    "mar": "MAR (the centre is observed; the rest goes missing by its brightness)",
}
GRID_TITLES = {
    "data": "Training data (missing in grey)",
    "gx": "Gx samples",
    "gm": "Gm masks",
    "imputed": "Imputations",
}


# ---------------------------------------------------------------------------------------------
# Errors


@contextmanager
def guard(what: str) -> Iterator[None]:
    """Show an error the user can fix (the engine's own types, or an OSError on a file) as a readable st.error;
    anything else is a bug, shown as one `internal error` line with its traceback in the server's log. The
    page keeps running either way.

    Streamlit's own control flow (st.rerun, st.stop) passes through: it derives from BaseException.
    """
    try:
        yield
    except (MisGANError, OSError) as err:
        log.info("%s failed: %s", what, err)
        st.error(f"{what}: {error_text(err)}")
    except Exception as err:  # a bug: say so, keep the traceback for the report
        log.error("%s: internal error", what, exc_info=True)
        st.error(f"{what}: {internal_error_text(err)}")


def error_text(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def internal_error_text(err: BaseException) -> str:
    return (f"internal error: {type(err).__name__}: {error_text(err)} (traceback in the server's log; please "
            f"report it)")


# ---------------------------------------------------------------------------------------------
# Images and curves


def grid_scale(height: int, target: int = 56) -> int:
    """Integer upscale so a small image cell is about `target` pixels tall."""
    return max(1, round(target / max(1, height)))


def show_grid(
    images: torch.Tensor, caption: str | None = None, nrow: int = 8, target: int = 40, width: Any = "content"
) -> None:
    """A grid of (N, C, H, W) images in [0, 1], upscaled with nearest neighbours so pixels stay crisp."""
    if images is None or len(images) == 0:
        st.caption(f"{caption}: nothing yet" if caption else "nothing yet")
        return
    st.image(
        to_pil(images, nrow=nrow, scale=grid_scale(images.shape[-2], target)), caption=caption, width=width
    )


# What each logged curve is, for legends; the paper's names (section 2, eq. 4-10).
CURVE_NAMES = {
    "w_x": "W_x: data critic's Wasserstein estimate (falls as Gx, Gm fit)",
    "w_m": "W_m: mask critic's Wasserstein estimate (falls as Gm fits)",
    "w_i": "W_i: imputer critic's Wasserstein estimate (falls as Gi fits)",
    "loss_dx": "Dx loss (critic: -W_x + gradient penalty)",
    "loss_dm": "Dm loss (critic: -W_m + gradient penalty)",
    "loss_di": "Di loss (critic: -W_i + gradient penalty)",
    "loss_gx": "Gx loss (-E[Dx], eq. 6)",
    "loss_gm": "Gm loss (-E[Dm], eq. 7)",
    "loss_gi": "Gi loss (-E[Di], eq. 9)",
    "fid": "live FID of 1,000 Gx samples",
    "imputation_fid": "imputation FID, split train (training examples)",
    "imputation_fid_test": "imputation FID, split test (held-out examples)",
}
CURVES_HELP = (
    "W_x, W_m, W_i are the critics' estimates of the Wasserstein distance between real and generated data, "
    "masks and imputations: lower is better, and they fall as training succeeds. The loss curves are what "
    "each network minimises; a GAN's losses need not fall, so judge progress by W and by FID (lower is better)."
)

OTHER_CURVES_HELP = (
    "Each curve is a loss this method minimises while it trains; judge its imputations by FID (lower is "
    "better) on the Compare page."
)


def curves_figure(
    history: Sequence[dict[str, Any]], keys: Sequence[str], x: str, title: str, y_title: str = "",
    names: dict[str, str] | None = None,
) -> go.Figure:
    """Line chart of history records: one trace per key present, against 'step' or 'time' (seconds); `names`
    override CURVE_NAMES' legend names."""
    names = {**CURVE_NAMES, **(names or {})}
    fig = go.Figure()
    for key in keys:
        pts = [(r[x], r[key]) for r in history if key in r and x in r and _finite(r[key])]
        if pts:
            xs, ys = zip(*pts, strict=True)
            fig.add_trace(
                go.Scatter(
                    x=list(xs),
                    y=list(ys),
                    mode="lines+markers" if len(pts) < 30 else "lines",
                    name=names.get(key, key),
                )
            )
    fig.update_layout(
        title=title,
        height=400,
        margin=dict(l=10, r=10, t=40, b=10),
        xaxis_title="steps" if x == "step" else "training time (s)",
        yaxis_title=y_title,
        showlegend=len(fig.data) > 1,
        legend=dict(orientation="h", yanchor="top", y=-0.35, font=dict(size=10)),
    )
    return fig


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def loss_keys(history: Sequence[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for r in history:
        for k in r:
            if (k.startswith("loss_") or k.startswith("w_")) and k not in keys:
                keys.append(k)
    return keys


def show_curves(
    history: Sequence[dict[str, Any]], key_prefix: str, fid_label: str = "FID (LeNet features)",
    live_fid: bool = True,
) -> None:
    """Losses and live FID against steps and against time, with the latest FID as a number."""
    losses = loss_keys(history)
    if not losses:
        st.caption("Curves appear after the first logged steps.")
        return
    fid_keys = ["fid", "imputation_fid", "imputation_fid_test"]
    fids = [r for r in history if any(_finite(r.get(k)) for k in fid_keys)]
    labels = history_labels(history)  # the imputation curves with their split and example count
    if fids:
        cols = st.columns(4)
        for col, key, name in ((cols[0], "fid", "Live FID (Gx samples)"),
                               (cols[1], "imputation_fid", "Imputation FID, split train"),
                               (cols[2], "imputation_fid_test", "Imputation FID, split test (held out)")):
            points = [r for r in fids if _finite(r.get(key))]
            if points:
                delta = points[-1][key] - points[-2][key] if len(points) > 1 else None
                what = labels.get(key, CURVE_NAMES.get(key, key))
                col.metric(name, f"{points[-1][key]:.1f}", None if delta is None else f"{delta:+.1f}",
                           delta_color="inverse", help=f"{what}; {fid_label}, at step {points[-1]['step']}; lower "
                                                       f"is better. The change is since the previous point.")
    st.caption(CURVES_HELP if any(k.startswith("w_") for k in losses) else OTHER_CURVES_HELP)
    c1, c2 = st.columns(2)
    with c1:
        st.plotly_chart(
            curves_figure(history, losses, "step", "Losses vs steps"), key=f"{key_prefix}-loss-step"
        )
    with c2:
        st.plotly_chart(
            curves_figure(history, losses, "time", "Losses vs time"), key=f"{key_prefix}-loss-time"
        )
    if fids:
        c3, c4 = st.columns(2)
        with c3:
            st.plotly_chart(
                curves_figure(history, fid_keys, "step", f"{fid_label} vs steps", names=labels),
                key=f"{key_prefix}-fid-step",
            )
        with c4:
            st.plotly_chart(
                curves_figure(history, fid_keys, "time", f"{fid_label} vs time", names=labels),
                key=f"{key_prefix}-fid-time",
            )
    elif live_fid:
        st.caption("No live FID points yet (they come every `fid_every` steps when it is on).")


# ---------------------------------------------------------------------------------------------
# Jobs


def fmt_seconds(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "-"
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {(s % 3600) // 60:02d}m"


STATUS_ICON = {
    "starting": ":material/hourglass_top:",
    "running": ":material/play_circle:",
    "paused": ":material/pause_circle:",
    "finished": ":material/check_circle:",
    "stopped": ":material/stop_circle:",
    "failed": ":material/error:",
}


def job_summary(snap: JobSnapshot) -> str:
    return (
        f"{STATUS_ICON.get(snap.status, '')} **{snap.label}** — {snap.status}, step {snap.step} / "
        f"{snap.target}"
    )


def job_progress(snap: JobSnapshot, key: str = "") -> None:
    """Status line, progress bar and, while it runs, speed and ETA of one job."""
    st.progress(snap.progress, text=f"{snap.status}: step {snap.step:,} of {snap.target:,}")
    c1, c2, c3 = st.columns(3)
    c1.metric("Step", f"{snap.step:,}")
    if snap.status == "running":
        c2.metric("Steps/s", f"{snap.steps_per_s:.2f}" if snap.steps_per_s else "-")
        c3.metric("ETA", fmt_seconds(snap.eta_s))
    else:
        c2.metric("Status", snap.status)
    if snap.error:
        st.error(f"Training failed: {snap.error}. The run folder keeps the full report in error.log.")


def job_controls(job: Job, snap: JobSnapshot, key: str) -> None:
    """Pause / resume / stop buttons. They act in callbacks, before the page redraws, so the buttons
    already show the job's new state."""
    c1, c2, c3 = st.columns(3)
    c1.button(
        "Pause", key=f"pause-{key}", disabled=snap.status != "running", width="stretch", on_click=job.pause
    )
    c2.button(
        "Resume", key=f"resume-{key}", disabled=snap.status != "paused", width="stretch", on_click=job.resume
    )
    c3.button(
        "Stop",
        key=f"stop-{key}",
        disabled=snap.done,
        width="stretch",
        on_click=job.stop,
        kwargs={"wait": False},
        help="Stops after the current step and writes a checkpoint; continue it later from Runs.",
    )


def show_job_grids(snap: JobSnapshot, columns: int = 4) -> None:
    names = [k for k in ("data", "gx", "gm", "imputed") if k in snap.grids]
    if not names:
        st.caption("Sample grids appear a few seconds after training starts.")
        return
    cols = st.columns(columns)
    for i, name in enumerate(names):
        with cols[i % columns]:
            show_grid(snap.grids[name][:64], GRID_TITLES.get(name, name), target=28)


# ---------------------------------------------------------------------------------------------
# Settings that survive page changes
#
# Streamlit forgets the state of every widget that a run did not draw, so leaving a page resets its widgets.
# Every run copies the values the user set into a plain (non-widget) session key, and a widget drawn again
# takes the copy as its value= (or index=, default=). Nothing writes a widget's key through the Session State
# API, so Streamlit never sees a widget "created with a default value but also had its value set via the Session
# State API", and a run interrupted before the widget is drawn cannot leave it at its minimum.

KEPT = "kept-settings"


def kept(key: str, default: Any, options: Sequence[Any] | None = None,
         bounds: tuple[float, float] | None = None) -> Any:
    """The value to draw widget `key` with, so that it survives page changes: pass it as value= (default= for
    a multiselect, or index= from `kept_index`) beside key=`key`.

    Records the widget's current value; where Streamlit dropped it, gives the recorded value, else `default`.
    With `options`, a value no longer offered (a deleted run, say) is repaired: a list keeps what is still
    offered, anything else becomes `default`; with `bounds` (a number input's min and max, when they vary), a
    value outside is clamped. A repair must reach the browser, which still shows the old value, so it is the
    one case written to the widget's key, and then the widget is drawn with no default of its own (None).
    """
    store = st.session_state.setdefault(KEPT, {})
    if key in st.session_state:
        current = st.session_state[key]
        repaired = _repaired(current, default, options, bounds)
        store[key] = repaired
        if repaired != current:
            st.session_state[key] = repaired
            return None
        return current
    return _repaired(store.get(key, default), default, options, bounds)


def _repaired(value: Any, default: Any, options: Sequence[Any] | None, bounds: tuple[float, float] | None) -> Any:
    if options is not None and not _offered(value, options):
        value = [v for v in value if v in options] if isinstance(value, list) else default
    if bounds is not None and value is not None:
        value = min(max(value, bounds[0]), bounds[1])
    return value


def kept_index(key: str, default: Any, options: Sequence[Any]) -> int | None:
    """`kept` for a selectbox or radio: the index= to draw it with (None after a repair, see `kept`)."""
    options = list(options)
    value = kept(key, default, options)
    if value is None:
        return None
    return options.index(value) if value in options else 0


def _offered(value: Any, options: Sequence[Any]) -> bool:
    if isinstance(value, (list, tuple)):
        return all(v in options for v in value)
    return value in options


# ---------------------------------------------------------------------------------------------
# Choices shown by label (widgets hold the label itself, which keeps AppTest and URLs simple; the labels are
# fixed strings, so a selection never resets because its label changed)


def pick(widget: Any, label: str, options: dict[Any, str], default: Any = None, **kwargs: Any) -> Any:
    """st.selectbox / st.radio over the labels of `options` (value -> label); returns the chosen value.

    With a key, the choice survives page changes (`kept`); `default` is a value of `options` (else the one at
    index=, else the first).
    """
    inverse = {v: k for k, v in options.items()}
    labels = list(options.values())
    if kwargs.get("key") is not None and labels:
        index = kwargs.pop("index", None)
        first = options[default] if default in options else labels[index or 0]
        kwargs["index"] = kept_index(kwargs["key"], first, labels)
    shown = widget(label, labels, **kwargs)
    return None if shown is None else inverse[shown]


def pick_many(label: str, options: dict[Any, str], default: Sequence[Any] = (), **kwargs: Any) -> list[Any]:
    """st.multiselect over the labels of `options`; with a key, the choice survives page changes."""
    inverse = {v: k for k, v in options.items()}
    labels = list(options.values())
    first = [options[d] for d in default if d in options]
    if kwargs.get("key") is not None:
        first = kept(kwargs["key"], first, labels)
    shown = st.multiselect(label, labels, default=first, **kwargs)
    return [inverse[s] for s in shown]


# ---------------------------------------------------------------------------------------------
# Runs, chosen by their folder: the selection is the folder path; the label says what the run is and never
# changes while it trains (its live step count is shown beside the selector, by `run_progress`)


def run_label(info: catalog.RunInfo) -> str:
    """What a run is and its folder, without anything that changes while it trains."""
    if info.error is not None:
        return f"{info.name} (unreadable)"
    what = catalog.describe(info.kind, info.spec, info.config)
    if info.demo:
        return f"{what} · {info.step:,} {catalog.METHODS[info.kind].step_unit} (shipped demo)"
    return f"{what} · {info.name}"


def run_progress(info: catalog.RunInfo) -> str:
    """A run's budget and state right now: training (step N of M), or the steps it trained."""
    job = catalog.training_now(info)
    unit = catalog.METHODS[info.kind].step_unit if info.kind in catalog.METHODS else "steps"
    if job is not None:
        snap = job.snapshot()
        return f"{snap.status}: step {snap.step:,} of {snap.target:,}"
    if info.kind in catalog.METHODS and not catalog.METHODS[info.kind].trainable:
        return "fitted"
    if info.demo:
        return f"{info.step:,} {unit}, finished (shipped demo)"
    if "steps" not in info.config:  # a baseline's folder does not record the budget it was fitted with
        return f"{info.step:,} {unit}"
    state_ = "finished" if info.step >= info.budget_steps else f"stopped (budget {info.budget_steps:,})"
    return f"{info.step:,} {unit}, {state_}"


def run_picker(label: str, runs: Sequence[catalog.RunInfo], key: str, default: catalog.RunInfo | None = None,
               where: Any = None, **kwargs: Any) -> catalog.RunInfo | None:
    """A selectbox of runs whose value is the run's folder; returns the chosen run. The choice survives page
    changes and live refreshes; a chosen folder that is gone falls back to `default` (else the first)."""
    if not runs:
        return None
    by_path = {str(r.path): r for r in runs}
    paths = list(by_path)
    first = str(default.path) if default is not None and str(default.path) in by_path else paths[0]
    chosen = (where or st).selectbox(label, paths, index=kept_index(key, first, paths), key=key,
                                     format_func=lambda p: run_label(by_path[p]) if p in by_path else p, **kwargs)
    return by_path.get(chosen)


def run_picker_many(label: str, runs: Sequence[catalog.RunInfo], key: str,
                    default: Sequence[catalog.RunInfo] = (), **kwargs: Any) -> list[catalog.RunInfo]:
    """A multiselect of runs keyed by folder (see `run_picker`)."""
    by_path = {str(r.path): r for r in runs}
    paths = list(by_path)
    first = [str(r.path) for r in default if str(r.path) in by_path]
    chosen = st.multiselect(label, paths, default=kept(key, first, paths), key=key,
                            format_func=lambda p: run_label(by_path[p]) if p in by_path else p, **kwargs)
    return [by_path[p] for p in chosen if p in by_path]


# ---------------------------------------------------------------------------------------------
# Data and missingness pickers


OWN_DATA = "your own data (.npz or PNG folder)"


def dataset_picker(key: str, allow_own: bool = True) -> str | None:
    """A selectbox of datasets (present ones first) with their status; returns a name or a path."""
    statuses = state.datasets()
    statuses.sort(key=lambda s: s.status != "present")
    labels = {s.name: f"{s.name} ({s.status}, {'x'.join(map(str, s.shape))})" for s in statuses}
    if allow_own:
        labels[OWN_DATA] = OWN_DATA
    choice = pick(
        st.selectbox,
        "Dataset",
        labels,
        key=f"{key}-dataset",
        help="mnist-5k ships with the app and works offline.",
    )
    if choice == OWN_DATA:
        upload = st.file_uploader(
            "Upload your incomplete data",
            type=["npz", "zip"],
            key=f"{key}-upload",
            help="An .npz with x (N, H, W) or (N, C, H, W) in [0, 1] or uint8 and m (1 = observed) or NaN in x; "
            "or a .zip of PNG images whose alpha channel is 0 where pixels are missing.",
        )
        if upload is not None:
            try:
                path = catalog.save_upload(upload.name, upload.getvalue())
            except MisGANError as err:
                st.error(f"Cannot use {upload.name}: {error_text(err)}")
                return None
            st.caption(f"Kept as `{path}`.")
            return str(path)
        roots = catalog.user_data_roots()
        text = st.text_input(
            "Path to an .npz with x and m, or a folder of PNGs with alpha",
            value=kept(f"{key}-own-path", ""), key=f"{key}-own-path",
            placeholder=str(roots[0] / "my-data.npz"),
            help="The app reads your files only from under " + " or ".join(f"`{r}`" for r in roots) + ".",
        ).strip()
        if not text:
            return None
        path = catalog.confined_path(text)
        if path is None:
            st.error(
                "For safety the app reads data only from under "
                + " or ".join(f"`{r}`" for r in roots)
                + ": copy your file there (or set MISGAN_DATA_DIR) and give its path."
            )
            return None
        return str(path)
    status = next(s for s in statuses if s.name == choice)
    if status.status != "present":
        where = catalog.user_data_roots()[0]
        how = catalog.how_to_get_by_hand(choice)
        st.error(f"Dataset {choice} is not on this machine (the data folder is `{where}`). "
                 + ("Press Download below, or copy its files there by hand: " if status.status == "downloadable"
                    else "To add it: ") + how + ".")
        if status.status == "downloadable" and st.button(
            f"Download {choice} into {where}", key=f"{key}-download",
            help="Needs a network connection; torchvision fetches the files into the data folder.",
        ):
            with st.spinner(f"Downloading {choice}…"):
                try:
                    st.success(f"{choice} is now in {catalog.download_dataset(choice)}.")
                except MisGANError as err:
                    st.error(error_text(err))
        return None
    return choice


def data_picker(key: str) -> tuple[str | None, bool, dict[str, Any]]:
    """Dataset and missingness: (dataset, whether it is the user's own data, missingness parameters). Own data
    brings its masks, so no missingness is offered for it."""
    dataset = dataset_picker(key)
    own = dataset is not None and dataset not in {s.name for s in state.datasets()}
    if own:
        st.info("Your own data brings its masks (alpha channel, m array or NaN), so no missingness is drawn.")
        return dataset, True, {"mask": "square", "mask_size": 14, "missing_rate": 0.5, "missing_rate_range": None}
    return dataset, False, missingness_picker(key)


def missingness_picker(key: str, shape: tuple[int, int, int] = (1, 28, 28)) -> dict[str, Any]:
    """Missingness process and its parameters, as DataSpec fields (see `data_spec`)."""
    h = shape[1]
    mask = pick(
        st.selectbox, "Missingness", {k: MASK_LABELS.get(k, k) for k in MASK_PROCESSES}, key=f"{key}-mask"
    )
    out: dict[str, Any] = {
        "mask": mask,
        "mask_size": max(1, h // 2),
        "missing_rate": 0.5,
        "missing_rate_range": None,
    }
    if mask == "square":
        out["mask_size"] = st.slider("Observed square side (pixels)", 1, h, value=kept(f"{key}-size", max(1, h // 2)),
            key=f"{key}-size")
    elif mask == "dropout":
        varies = st.checkbox("Rate varies per example", value=kept(f"{key}-varies", False), key=f"{key}-varies")
        if varies:
            lo, hi = st.slider("Missing-rate range", 0.0, 0.95, step=0.05, value=kept(f"{key}-range", (0.2, 0.8)),
                key=f"{key}-range")
            out["missing_rate_range"] = [lo, hi]
            out["missing_rate"] = 0.5 * (lo + hi)
        else:
            out["missing_rate"] = st.slider("Missing rate", 0.0, 0.95, step=0.05, value=kept(f"{key}-rate", 0.5),
                key=f"{key}-rate")
    elif mask in ("self-masking", "censor", "mar"):
        rate_key = f"{key}-dd-rate" if mask != "mar" else f"{key}-mar-rate"  # their ranges differ
        out["missing_rate"] = st.slider(
            "Missing rate (matched on the dataset)", 0.05, 0.9 if mask != "mar" else 0.8, step=0.05,
            value=kept(rate_key, 0.5), key=rate_key,
            help="The process's offset or threshold is chosen so that this share of the "
            "dataset's pixels goes missing; which ones depends on the images.",
        )
        if mask != "mar":
            out["mask_direction"] = st.radio(
                "Which pixels go missing", ["high", "low"], horizontal=True,
                index=kept_index(f"{key}-direction", "high", ["high", "low"]), key=f"{key}-direction",
                format_func={"high": "bright ones (saturation)", "low": "dark ones"}.get,
            )
        if mask == "self-masking":
            out["mask_steepness"] = st.number_input(
                "Steepness k", 0.5, 200.0, step=0.5, value=kept(f"{key}-steepness", float(DataSpec.mask_steepness)),
                    key=f"{key}-steepness",
                help="Each pixel is missing with probability sigmoid(k (x - c)): k is the logit per unit of "
                "intensity. 20 is close to censoring (values past the threshold are all but always missing, so "
                "how bright they were is barely in the data); smaller is softer.",
            )
    return out


def data_spec(dataset: str, params: dict[str, Any], mask_seed: int = 0, limit: int | None = None) -> DataSpec:
    """The DataSpec the pickers describe."""
    rng = params.get("missing_rate_range")
    return DataSpec(dataset=dataset, data_dir=state.data_dir(), limit=limit or None, mask=params["mask"],
                    mask_size=int(params["mask_size"]), missing_rate=float(params["missing_rate"]),
                    missing_rate_range=tuple(rng) if rng else None,
                    mask_direction=params.get("mask_direction", "high"),
                    mask_steepness=float(params.get("mask_steepness", DataSpec.mask_steepness)),
                    mask_seed=int(mask_seed))


@st.cache_data(show_spinner=False, max_entries=32)
def _preview(spec: DataSpec, n: int = 32) -> tuple[torch.Tensor, torch.Tensor, float, str]:
    data = spec.replace(limit=min(n, spec.limit or n)).load()
    return show_missing(data.x, data.m), data.m, data.missing_rate, data.missingness


def missingness_preview(spec: DataSpec) -> tuple[int, int, int] | None:
    """A grid of real masked examples (missing in grey) and the missing rate; returns the data shape."""
    try:
        shown, _, rate, described = _preview(spec)
    except (MisGANError, OSError) as err:
        st.error(f"Cannot preview this data: {error_text(err)}")
        return None
    shape = tuple(shown.shape[1:])
    show_grid(
        shown, f"{described or 'given masks'}: real examples, missing pixels in grey", nrow=8, target=36
    )
    if spec.own_data:
        st.metric("Missing in these examples", f"{rate:.1%}")
        return shape  # type: ignore[return-value]
    try:
        expected = spec.expected_missing_rate(shape[1], shape[2])
    except MisGANError:
        expected = rate
    c1, c2 = st.columns(2)
    c1.metric("Expected missing rate", f"{expected:.1%}")
    c2.metric("Missing in these examples", f"{rate:.1%}")
    return shape  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# Trained models, loaded once per checkpoint and shared by every session


@st.cache_resource(max_entries=8, show_spinner="Loading the trained model…")
def _cached_run(path: str, stamp: float) -> Run:
    return open_run(path, device=str(pick_device("auto")))


def load_run(path: Any) -> Run:
    """Any run folder opened for imputing and sampling (misgan_core.open_run), reloaded when its checkpoint
    changes."""
    return _cached_run(str(path), state.checkpoint_stamp(path))


@st.cache_resource(max_entries=8, show_spinner="Loading the data…")
def _incomplete(spec: DataSpec, n: int) -> Any:
    return spec.load().subset(slice(0, n))


def cached_incomplete(spec: DataSpec, n: int) -> Any:
    """The first n examples of a DataSpec's incomplete dataset (masks drawn as training draws them)."""
    return _incomplete(spec, int(n))
