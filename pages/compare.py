"""Compare: MisGAN, GAIN, ConvAC, MF, mean and zero imputation on the same incomplete data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import streamlit as st

from misgan_core import catalog, curves, evaluation, export, sweep
from misgan_core.grids import show_missing_colour, to_pil
from misgan_core.methods import METHODS, baselines
from workbench import state, widgets

st.title("Compare imputation methods")
st.caption(
    "Every method sees the same incomplete examples. Imputation FID compares the completed data (observed "
    "pixels kept) with the complete data; RMSE is measured on the missing pixels only. Lower is better "
    "for both, but RMSE rewards blurry averages (paper, appendix C)."
)

c1, c2 = st.columns([1, 1], gap="large")
with c1:
    st.subheader("Data and missingness")
    dataset, own_data, params = widgets.data_picker("compare")
    mask_seed = st.number_input("Mask seed", 0, 10_000, value=widgets.kept("compare-mask-seed", 0),
        key="compare-mask-seed")
    n_eval = st.number_input(
        "Examples to evaluate",
        50,
        10_000,
        step=50,
        value=widgets.kept("compare-n", 500), key="compare-n",
        help="The first N incomplete examples; FID on few examples is biased upward, so "
        "compare values computed with the same N.",
    )
if dataset is None:
    st.stop()
spec = widgets.data_spec(dataset, params, int(mask_seed))
with c2:
    st.subheader("Preview")
    widgets.missingness_preview(spec)

# ---------------------------------------------------------------------------------------------
# Methods: what is trained for this data, what can be fitted

st.subheader("Methods")
trained = [r for r in catalog.list_runs() if r.usable and r.imputes and r.spec.same_missingness(spec)]
misgan_runs = [r for r in trained if not r.method.baseline]  # the workbench's own method: MisGAN
available: dict[str, catalog.RunInfo] = {}

st.markdown("**MisGAN**")
if misgan_runs:
    # Keyed by folder, labels that never change, wide enough to read them; the default is the best finished
    # run for this missingness, and the chosen run's state is shown beside it.
    best = catalog.best_finished_run(misgan_runs)
    m1, m2 = st.columns([5, 2], vertical_alignment="bottom")
    chosen = widgets.run_picker("MisGAN run", misgan_runs, key="compare-misgan", default=best, where=m1)
    m2.caption(widgets.run_progress(chosen) if chosen else "")
    use_misgan = st.checkbox("Include MisGAN", value=widgets.kept("compare-use-misgan", True), key="compare-use-misgan")
    if use_misgan and chosen is not None:
        available["MisGAN"] = chosen
else:
    row = st.columns([3, 2])
    row[0].caption("No MisGAN run with an imputer for this data and missingness yet.")
    with row[1]:
        quick = state.quickstart_config()
        config = dataclasses.replace(quick, data=spec)
        running = catalog.running_misgan_job(config)
        if st.button(
            "Train MisGAN on this data",
            key="compare-train-misgan",
            disabled=running is not None,
            help="Runs in the background; follow it on the Train page.",
        ):
            with widgets.guard("Could not start MisGAN"):
                job, _ = catalog.start_misgan_job(config)
                st.session_state["train_job"] = job.id
                st.success(
                    f"Started {job.label}; follow it on the Train page. It appears here when it has saved "
                    f"a checkpoint."
                )
        if running is not None:
            st.caption(f"Training: {widgets.job_summary(running.snapshot())}")

st.markdown("**Baselines**")
baseline_kinds = [m.name for m in baselines()]
cols = st.columns(len(baseline_kinds))
to_fit: list[tuple[str, int]] = []
for col, kind in zip(cols, baseline_kinds, strict=True):
    with col:
        title = METHODS[kind].title
        job = catalog.baseline_job(kind, spec)
        busy = job is not None and job.alive
        # A fit still running is shown with its progress and compared only when it is done.
        fitted = [m for m in trained if m.kind == kind and catalog.training_now(m) is None]
        if busy:
            snap = job.snapshot()
            doing = "training" if METHODS[kind].trainable else "fitting"
            st.markdown(f":material/hourglass_top: **{title}** {doing}"
                        f"  \nstep {snap.step:,} of {snap.target:,}; compared when done")
        elif fitted:
            st.markdown(f":material/check_circle: **{title}**  \n{widgets.run_progress(fitted[0])}")
            if st.checkbox(f"Include {title}", value=widgets.kept(f"compare-use-{kind}", True),
                key=f"compare-use-{kind}"):
                available[title] = fitted[0]
        else:
            st.markdown(f":material/radio_button_unchecked: **{title}** not fitted")
        steps = 1
        if METHODS[kind].trainable:
            steps = st.number_input("steps", 1, 1_000_000, step=100, key=f"compare-steps-{kind}",
                                    value=widgets.kept(f"compare-steps-{kind}", METHODS[kind].default_steps))
        fit_key = f"compare-{'refit' if fitted else 'fit'}-{kind}"
        if st.checkbox(
            "Fit" if not fitted else "Refit",
            value=widgets.kept(fit_key, not fitted and not METHODS[kind].trainable),
            key=fit_key,
            disabled=busy,
        ):
            to_fit.append((kind, int(steps)))
if st.button(
    "Fit the ticked baselines",
    key="compare-fit",
    disabled=not to_fit,
    help="Fits in the background (GAIN and ConvAC take minutes on a CPU); results appear here.",
):
    # Closed-form fits (seconds) go first and show as soon as they are done; the trainable ones fit one after
    # another, since two trainings at once on a small CPU are each slower.
    previous = None
    for kind, steps in sorted(to_fit, key=lambda ks: METHODS[ks[0]].trainable):
        with widgets.guard(f"Could not start {METHODS[kind].title}"):
            job, _ = catalog.start_baseline_job(kind, spec, steps, after=previous if METHODS[kind].trainable else None)
            if METHODS[kind].trainable:
                previous = job
    st.rerun()

def _fit_jobs() -> list:
    """This data's baseline jobs whose run folder still exists (a deleted run's job is not listed)."""
    jobs = [catalog.baseline_job(k, spec) for k in baseline_kinds]
    return [j for j in jobs if j is not None and Path(j.key).exists()]


# What this page was drawn with; the panel below redraws the page when any of it changes (a fit finished,
# failed or was deleted), so no status above it goes stale.
st.session_state["compare-drawn-statuses"] = [(j.key, j.snapshot().status) for j in _fit_jobs()]


@st.fragment(run_every=2)
def fitting_panel() -> None:
    jobs = _fit_jobs()
    snaps = [j.snapshot() for j in jobs]
    for snap in snaps:
        st.progress(snap.progress, text=f"{snap.label}: {snap.status}, step {snap.step:,} of {snap.target:,}")
        if snap.error:
            st.error(f"{snap.label} failed: {snap.error}")
    now = [(j.key, s.status) for j, s in zip(jobs, snaps, strict=True)]
    if now != st.session_state.get("compare-drawn-statuses"):
        st.rerun(scope="app")

fitting_panel()

# ---------------------------------------------------------------------------------------------
# Side by side and the table

st.subheader("Imputations of the same examples")
if not available:
    st.info(
        "Nothing to compare yet: tick baselines to fit above (mean, zero, MF take seconds) or train MisGAN."
    )
    st.stop()

data = None
with widgets.guard("Could not load the data"):
    data = widgets.cached_incomplete(spec, int(n_eval))
if data is None:
    st.stop()

show_n = st.slider("Examples shown", 1, 16, value=widgets.kept("compare-show", 8), key="compare-show")
results = {}
opened = {}
for name, info in available.items():
    with widgets.guard(f"{name} could not impute"):
        opened[name] = widgets.load_run(info.path)
        results[name] = export.impute_dataset_draws(
            opened[name].require_imputer(), data.x[:show_n], data.m[:show_n], draws=1
        )[0]
if results:
    st.caption("Missing pixels are drawn in red in the Input column.")
    shown = {"Input": show_missing_colour(data.x[:show_n], data.m[:show_n])}
    if data.ground_truth:
        shown["Truth"] = data.x[:show_n]
    shown.update(results)
    for col, (title, images) in zip(st.columns(len(shown)), shown.items(), strict=True):
        col.markdown(f"**{title}**")  # a header over its own column
        col.image(to_pil(images, nrow=1, scale=widgets.grid_scale(images.shape[-2], 56)))

st.subheader("Imputation FID and RMSE")
key = f"compare-results-{spec.label()}-{int(n_eval)}"
if not data.ground_truth:
    st.info(
        "FID and RMSE compare imputations with the complete data, and your own incomplete data has none: "
        "compare the imputations above by eye, or evaluate on a built-in dataset with masks drawn."
    )
if st.button(
    f"Evaluate {len(opened)} method(s) on {len(data)} examples",
    key="compare-evaluate",
    type="primary",
    disabled=not data.ground_truth,
):
    rows = []
    bar = st.progress(0.0, text="evaluating")
    for i, (name, run) in enumerate(opened.items()):
        bar.progress(i / len(opened), text=f"evaluating {name} ({run.path.name})")
        with widgets.guard(f"Evaluating {name} ({run.path.name}) failed"):
            row_ = evaluation.result_row(
                run.method.title,
                spec,
                evaluation.evaluate_imputer(run.require_imputer(), data),
                source=run.path.name,
                budget=run.budget(),
            )
            evaluation.record_result(row_)
            # A run still training is scored as it is now, and says so.
            job = catalog.training_now(available[name])
            row_["state"] = (f"at step {job.snapshot().step:,} of {job.snapshot().target:,}, still training"
                             if job is not None else "done")
            rows.append(row_)
    bar.progress(1.0, text="done")
    st.session_state[key] = rows
rows = st.session_state.get(key)
if rows:
    label = rows[0].get("fid_label") or "FID"
    def _round(v: object, digits: int) -> object:
        return round(v, digits) if isinstance(v, (int, float)) else v

    table = [
        {
            "method": r["method"],
            "run": r.get("source"),
            "state": r.get("state", "done"),
            "steps": r.get("steps"),
            "epochs": r.get("epochs"),
            "training time (s)": r.get("train_seconds"),
            f"imputation {label}": _round(r["fid"], 1),
            "RMSE (missing pixels)": _round(r["rmse"], 4),
            "missing rate": _round(r["missing_rate"], 3),
            "examples": r["n"],
            "evaluation (s)": _round(r["seconds"], 1),
        }
        for r in rows
    ]
    st.markdown(f"Scored on the **{rows[0].get('split', 'train')} split** (the run's own examples): the first "
                f"**{rows[0]['n']:,} examples** of "
                f"{spec.label()}, with the masks training drew (mask seed {int(mask_seed)}), as the paper does.")
    st.dataframe(table, hide_index=True, width="stretch")
    scored = [r for r in rows if r["fid"] is not None and r.get("state", "done") == "done"]
    if scored:
        best = min(scored, key=lambda r: r["fid"])
        st.caption(f"Lowest imputation {label} among finished methods: {best['method']} "
                   f"({best.get('source')}, {best['fid']:.1f}).")
else:
    st.caption("Press Evaluate to compute the table (a few seconds per method for 500 examples).")

st.subheader("Imputation FID against training time")
st.caption(
    "Each method's curve as it trained: the imputation FID logged at its evaluation points, against its training "
    "seconds (closed-form methods: one point, at their fit). Split test: a fixed subset of held-out examples "
    "under this missingness; split train: a fixed subset of the run's own examples. Hover a point for its steps, "
    "epochs and seconds. A method whose line starts lower and further left gives better imputations sooner."
)
curve_split = st.radio("Split", ["test", "train"], horizontal=True, key="compare-time-split",
                       index=widgets.kept_index("compare-time-split", "test", ["test", "train"]))
time_curves, no_curve = curves.run_curves(opened, curve_split)
if time_curves:
    st.plotly_chart(curves.figure(time_curves, curves.title(time_curves, spec.label())), key="compare-time-figure")
    reach = curves.time_to_reach(time_curves)
    if reach:
        with st.expander("Time to reach each other method's latest figure"):
            st.dataframe(
                [{"method": r["method"], "reaches": f"{r['target']}: {r['target_fid']}",
                  "training time (s)": r["seconds"] if r["seconds"] is not None else "not reached",
                  "at": "-" if r["step"] is None else f"{r['step']:,} {r['step_unit']}"} for r in reach],
                hide_index=True, width="stretch")
if no_curve:
    st.caption(f"No curve on split {curve_split} for {', '.join(no_curve)}: fitted or trained before runs logged "
               f"one there, or the data has no held-out split with ground truth. Refit or resume it to log one.")

st.subheader("Metrics against missing rate (sweeps)")
st.caption(
    "The paper's figures 5 and 9 from sweep folders: `python -m misgan_core sweep ... --out "
    f"{catalog.sweeps_root()}/NAME` writes one, and this page reads the same results and draws the same "
    "figures as the command. Hover a point for the steps, epochs and training time behind it."
)
# Your sweeps first, then the shipped paper-budget sweeps (docs/reproduction.md).
SHIPPED_SWEEPS = Path(__file__).resolve().parent.parent / "docs" / "reproduction"
sweeps = sweep.find_sweeps(catalog.sweeps_root()) + sweep.find_sweeps(SHIPPED_SWEEPS)
if sweeps:
    s1, s2, s3 = st.columns(3)
    names = {str(p): p.name + (" (shipped: docs/reproduction.md)" if p.parent == SHIPPED_SWEEPS else "")
             for p in sweeps}
    folder = widgets.pick(s1.selectbox, "Sweep", names, key="compare-sweep-folder")
    rows = sweep.read_sweep(folder)
    splits = sorted({str(r.get("split")) for r in rows}) or ["train"]
    split = s2.radio(
        "Split",
        splits,
        horizontal=True,
        index=widgets.kept_index("compare-sweep-split", splits[0], splits), key="compare-sweep-split",
        help="train: the run's own examples (the paper's protocol); test: held-out examples.",
    )
    metric = widgets.pick(s3.radio, "Metric", sweep.METRICS, key="compare-sweep-metric", horizontal=True)
    st.plotly_chart(sweep.figure(rows, metric, split), key="compare-sweep-figure")
    by_missingness = {m: found for (m, s), found in sweep.quality_curves(folder, rows).items() if s == split}
    if by_missingness:
        shown = widgets.pick(st.selectbox, "Imputation FID against training time at", {m: m for m in by_missingness},
                             key="compare-sweep-time")
        st.plotly_chart(curves.figure(by_missingness[shown], curves.title(by_missingness[shown], shown)),
                        key="compare-sweep-time-figure")
    st.dataframe(
        [
            {
                "missingness": r.get("missingness"),
                "method": r.get("method"),
                "budget": r.get("budget"),
                "steps": r.get("steps"),
                "epochs": r.get("epochs"),
                "training time (s)": sweep.training_seconds(r),
                sweep.METRICS[metric]: r.get(metric),
            }
            for r in sweep.latest_rows(rows)
            if r.get("split") == split
        ],
        hide_index=True,
        width="stretch",
    )
else:
    st.caption("No sweep folder yet. Run one from the command line, or the closed-form one below (seconds).")

RATES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
with st.expander("Sweep the closed-form baselines (mean, zero, MF) here, in seconds"):
    rates = st.multiselect(
        "Missing rates",
        RATES,
        default=widgets.kept("compare-sweep-rates", [0.5, 0.8, 0.9], RATES), key="compare-sweep-rates",
    )
    sweep_mask = st.radio("Missingness", ["dropout", "square"], horizontal=True,
                          index=widgets.kept_index("compare-sweep-mask", "dropout", ["dropout", "square"]),
                              key="compare-sweep-mask")
    closed_form = {m.name: m.title for m in baselines() if not m.trainable}
    kinds = widgets.pick_many(
        "Methods",
        closed_form,
        default=list(closed_form),
        key="compare-sweep-kinds",
    )
    if st.button("Run the sweep", key="compare-sweep-run", disabled=not rates or not kinds or spec.own_data):
        with widgets.guard("The sweep failed"), st.spinner("Fitting and evaluating…"):
            sweep.Sweep(
                catalog.sweeps_root() / f"closed-form-{spec.dataset_name}-{sweep_mask}",
                spec.dataset,
                kinds,
                sweep_mask,
                sorted(rates),
                sweep.Budget("quick"),
                data_dir=spec.data_dir,
                log=lambda line: None,
            ).run(progress=False)
            st.rerun()
