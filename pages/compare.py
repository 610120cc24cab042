"""Compare: MisGAN, GAIN, ConvAC, MF, mean and zero imputation on the same incomplete data."""

from __future__ import annotations

import dataclasses

import plotly.graph_objects as go
import streamlit as st

from misgan_core import catalog, evaluation, export
from misgan_core.catalog import BASELINE_KINDS, METHODS
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
    dataset = widgets.dataset_picker("compare", allow_own=False)
    params = widgets.missingness_picker("compare")
    mask_seed = st.number_input("Mask seed", 0, 10_000, 0, key="compare-mask-seed")
    n_eval = st.number_input(
        "Examples to evaluate",
        50,
        10_000,
        500,
        step=50,
        key="compare-n",
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
misgan_runs = [r for r in trained if r.kind == "misgan"]
available: dict[str, catalog.RunInfo] = {}

row = st.columns([2, 3])
with row[0]:
    st.markdown("**MisGAN**")
    if misgan_runs:
        titles = {str(m.path): m.title for m in misgan_runs}
        pick = widgets.pick(st.selectbox, "MisGAN run", titles, key="compare-misgan")
        use_misgan = st.checkbox("Include MisGAN", value=True, key="compare-use-misgan")
        if use_misgan:
            available["MisGAN"] = next(m for m in misgan_runs if str(m.path) == pick)
    else:
        st.caption("No MisGAN run with an imputer for this data and missingness yet.")
with row[1]:
    if not misgan_runs:
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
cols = st.columns(len(BASELINE_KINDS))
to_fit: list[tuple[str, int]] = []
for col, kind in zip(cols, BASELINE_KINDS, strict=True):
    with col:
        title = METHODS[kind].title
        fitted = [m for m in trained if m.kind == kind]
        job = catalog.baseline_job(kind, spec)
        busy = job is not None and job.alive
        if fitted:
            st.markdown(f":material/check_circle: **{title}**  \n{fitted[0].title}")
            if st.checkbox(f"Include {title}", value=True, key=f"compare-use-{kind}"):
                available[title] = fitted[0]
        elif busy:
            st.markdown(f":material/hourglass_top: **{title}** fitting")
        else:
            st.markdown(f":material/radio_button_unchecked: **{title}** not fitted")
        steps = 1
        if METHODS[kind].trainable:
            steps = st.number_input(
                "steps", 1, 1_000_000, METHODS[kind].default_steps, step=100, key=f"compare-steps-{kind}"
            )
        if st.checkbox(
            "Fit" if not fitted else "Refit",
            value=not fitted and not METHODS[kind].trainable,
            key=f"compare-{'refit' if fitted else 'fit'}-{kind}",
            disabled=busy,
        ):
            to_fit.append((kind, int(steps)))
if st.button(
    "Fit the ticked baselines",
    key="compare-fit",
    disabled=not to_fit,
    help="Fits in the background (GAIN and ConvAC take minutes on a CPU); results appear here.",
):
    for kind, steps in to_fit:
        with widgets.guard(f"Could not start {METHODS[kind].title}"):
            catalog.start_baseline_job(kind, spec, steps)
    st.rerun()

@st.fragment(run_every=2)
def fitting_panel() -> None:
    jobs = [catalog.baseline_job(k, spec) for k in BASELINE_KINDS]
    snaps = [j.snapshot() for j in jobs if j is not None]
    if not snaps:
        return
    for snap in snaps:
        st.progress(snap.progress, text=f"{snap.label}: {snap.status}, step {snap.step}/{snap.target}")
        if snap.error:
            st.error(f"{snap.label} failed: {snap.error}")
    key = "compare-fitting"
    still = any(not s.done for s in snaps)
    if st.session_state.get(key) and not still:
        st.session_state[key] = False
        st.rerun()
    st.session_state[key] = still

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

show_n = st.slider("Examples shown", 1, 16, 8, key="compare-show")
results = {}
opened = {}
for name, info in available.items():
    with widgets.guard(f"{name} could not impute"):
        opened[name] = widgets.load_run(info.path)
        results[name] = export.impute_dataset_draws(
            opened[name].require_imputer(), data.x[:show_n], data.m[:show_n], draws=1
        )[0]
if results:
    grid, titles = export.side_by_side(data.x[:show_n], data.m[:show_n], results)
    st.caption("Columns: " + " | ".join(titles))
    widgets.show_grid(grid, None, nrow=len(titles), target=56)

st.subheader("Imputation FID and RMSE")
key = f"compare-results-{spec.label()}-{int(n_eval)}"
if st.button(
    f"Evaluate {len(opened)} method(s) on {len(data)} examples", key="compare-evaluate", type="primary"
):
    rows = []
    bar = st.progress(0.0, text="evaluating")
    for i, (name, run) in enumerate(opened.items()):
        bar.progress(i / len(opened), text=f"evaluating {name}")
        with widgets.guard(f"Evaluating {name} failed"):
            row_ = evaluation.result_row(
                METHODS[run.kind].title,
                spec,
                evaluation.evaluate_imputer(run.require_imputer(), data),
                source=run.path.name,
                budget=run.budget(),
            )
            evaluation.record_result(row_)
            rows.append(row_)
    bar.progress(1.0, text="done")
    st.session_state[key] = rows
rows = st.session_state.get(key)
if rows:
    label = rows[0].get("fid_label") or "FID"
    table = [
        {
            "method": r["method"],
            "steps": r.get("steps"),
            "epochs": r.get("epochs"),
            "training time (s)": r.get("train_seconds"),
            f"imputation {label}": r["fid"],
            "RMSE (missing pixels)": r["rmse"],
            "missing rate": r["missing_rate"],
            "examples": r["n"],
            "seconds": r["seconds"],
        }
        for r in rows
    ]
    st.dataframe(table, hide_index=True, width="stretch")
    scored = [r for r in rows if r["fid"] is not None]
    if scored:
        best = min(scored, key=lambda r: r["fid"])
        st.caption(f"Lowest imputation {label}: {best['method']} ({best['fid']:.2f}).")
else:
    st.caption("Press Evaluate to compute the table (a few seconds per method for 500 examples).")

st.subheader("FID against missing rate")
all_rows = evaluation.read_results()
series = {k: v for k, v in evaluation.rate_series(all_rows, dataset, spec.mask).items() if len(v) >= 2}
if series:
    fig = go.Figure()
    for name, pts in series.items():
        fig.add_trace(
            go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=name)
        )
    label = next((r.get("fid_label") for r in all_rows if r.get("fid_label")), "FID")
    fig.update_layout(
        height=320,
        xaxis_title="missing rate",
        yaxis_title=f"imputation {label}",
        margin=dict(l=10, r=10, t=30, b=10),
    )
    st.plotly_chart(fig, key="compare-sweep")
else:
    st.caption(
        "Appears once a method has been evaluated at two or more missing rates (evaluate under dropout at "
        "several rates, or run the quick sweep below)."
    )
if spec.mask == "dropout":
    with st.expander("Quick sweep of the closed-form baselines (mean, zero, MF) over dropout rates"):
        rates = st.multiselect(
            "Missing rates",
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
            default=[0.2, 0.5, 0.8],
            key="compare-sweep-rates",
        )
        kinds = widgets.pick_many(
            "Methods",
            {k: METHODS[k].title for k in ("mean", "zero", "mf")},
            default=["mean", "zero"],
            key="compare-sweep-kinds",
        )
        if st.button("Run the sweep", key="compare-sweep-run", disabled=not rates or not kinds):
            bar = st.progress(0.0)
            with widgets.guard("The sweep failed"):
                evaluation.sweep_closed_form(
                    spec.replace(limit=int(n_eval)),
                    sorted(rates),
                    kinds,
                    progress=lambda f, t: bar.progress(f, text=t),
                )
                st.rerun()
