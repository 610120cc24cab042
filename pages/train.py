"""Train: choose data, missingness and hyper-parameters; start, pause, resume, stop; watch it learn live."""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from misgan_core import MisGANConfig, MisGANError, catalog, native_bf16, pick_device
from misgan_core.jobs import registry
from misgan_core.options import SECTIONS, FormField, form, from_form
from workbench import state, widgets

st.title("Train MisGAN")
st.caption(
    "Training runs in the background on the server: leaving this page or closing the browser does not "
    "stop it, and every browser session sees the same jobs."
)

settings, preview = st.columns([1, 1], gap="large")
with settings:
    st.subheader("Data and missingness")
    dataset, own_data, params = widgets.data_picker("train")
    mask_seed = 0
    if not own_data:  # own data brings its masks: there is nothing to seed
        mask_seed = st.number_input(
            "Mask seed (masks are drawn once per example)", 0, 10_000, 0, key="train-mask-seed"
        )
    limit = st.number_input(
        "Use only the first N examples (0 = all)", 0, 1_000_000, 0, step=500, key="train-limit"
    )

spec = widgets.data_spec(dataset, params, int(mask_seed), int(limit) or None) if dataset else None
with preview:
    st.subheader("Preview")
    shape = widgets.missingness_preview(spec) if spec else None
    if dataset is None:
        st.info("Choose a dataset to see real masked examples here.")

st.subheader("Model and training")
gpu = state.on_gpu()
# Every MisGAN option the page shows, from its declaration on MisGANConfig (misgan_core/options.py). The page
# starts from a longer run than the library's default, with the imputer on (Inpaint, Compare and exports need it).
FORM = form(MisGANConfig, starting={"arch": "conv" if gpu else "fc", "steps": 5000 if gpu else 2000, "imputer": True})


def _draw(field: FormField, where: Any) -> Any:
    """One option's widget; returns its value (None: a number left empty, decided when the run is made)."""
    if field.kind == "checkbox":
        return where.checkbox(field.label, value=field.value, key=field.key, help=field.help)
    if field.kind in ("select", "radio"):
        return widgets.pick(where.radio if field.kind == "radio" else where.selectbox, field.label, field.choices,
                            index=list(field.choices).index(field.value), key=field.key, help=field.help,
                            **field.kwargs)
    if field.kind == "number":
        return where.number_input(field.label, value=field.value, key=field.key, help=field.help,
                                  placeholder=field.placeholder, **field.kwargs)
    return where.text_input(field.label, value=field.value or "", key=field.key, help=field.help) or None


values: dict[str, Any] = {}
main_fields = [f for f in FORM if f.section == "main"]
for field, column in zip(main_fields, st.columns(len(main_fields)), strict=True):
    values[field.name] = _draw(field, column)
st.caption("Recipe: *paper* is appendix D exactly; *recommended* (the default) adds weight averages, an imputer and "
           "imputer critic that see the mask, and Adam's beta1 0.5, which scored better in the measurements "
           "(docs/reproduction.md). Options set below override the recipe.")
with st.expander(SECTIONS["hyper"]):
    columns = st.columns(4)
    for i, field in enumerate(f for f in FORM if f.section == "hyper"):
        values[field.name] = _draw(field, columns[i % 4])
if values.get("precision") == "bf16" and not native_bf16(pick_device("auto")):
    st.caption("This machine has no bfloat16 instructions: bf16 would train slower here than fp32.")

config = None
if dataset:
    # grids every N steps, and a checkpoint with them (at least every 100 steps)
    config = from_form(MisGANConfig, values, data=spec, checkpoint_every=max(100, int(values["sample_every"])))
    try:
        config.validate()
    except MisGANError as err:
        st.error(f"These settings cannot train: {err}")
        config = None
if config is not None:
    left_empty = [f for f in FORM if f.placeholder and values[f.name] is None]
    if left_empty:
        resolved = config.resolved()
        st.caption("Left empty, so decided for this run: "
                   + ", ".join(f"{f.label} {getattr(resolved, f.name):g}" for f in left_empty) + ".")

running = catalog.running_misgan_job(config) if config else None
b1, b2 = st.columns([1, 3])
start = b1.button(
    "Start training",
    type="primary",
    key="train-start",
    width="stretch",
    disabled=config is None or running is not None or shape is None,
    help="A job with exactly these settings is already running." if running else None,
)
if config is not None:
    b2.caption(
        f"Run folder: `{state.runs_root() / catalog.misgan_run_name(config)}` (a suffix is added when it "
        f"exists). {'Already training: see below.' if running else ''}"
    )
if start and config is not None:
    with widgets.guard("Could not start training"):
        job, started = catalog.start_misgan_job(config)
        st.session_state["train_job"] = job.id
        st.rerun()  # redraw with Start disabled while this job runs

# ---------------------------------------------------------------------------------------------
# Live area


def _misgan_jobs() -> list:
    """MisGAN trainings only: baseline fits have their own panel on Compare."""
    return [j for j in registry().jobs() if j.kind == "misgan"]


def _picked() -> None:
    labels = st.session_state.get("train-job-labels", {})
    st.session_state["train_job"] = labels.get(st.session_state["train-job-select"])


def _current_job_id() -> str | None:
    jobs = _misgan_jobs()
    if not jobs:
        return None
    ids = [j.id for j in jobs]
    wanted = st.session_state.get("train_job")
    if wanted not in ids:
        alive = [j for j in jobs if j.alive]
        wanted = (alive or jobs)[-1].id
    if len(jobs) > 1:
        # Shown by what they are (method, data and missingness, budget); started time tells twins apart.
        labels = {f"{j.label} (started {time.strftime('%H:%M:%S', time.localtime(j.started_at))})": j.id
                  for j in reversed(jobs)}
        st.session_state["train-job-labels"] = labels
        st.session_state["train-job-select"] = next(k for k, v in labels.items() if v == wanted)
        st.selectbox("Job", list(labels), key="train-job-select", on_change=_picked)
    st.session_state["train_job"] = wanted
    return wanted


def _live(job_id: str) -> None:
    job = registry().get(job_id)
    if job is None:
        st.caption("That job is gone (the server restarted); its run folder is listed on the Runs page.")
        return
    snap = job.snapshot()
    st.markdown(widgets.job_summary(snap) + f"  \nRun folder: `{job.key}`")
    config = getattr(job.trainer, "config", None)
    if config is not None:
        with st.expander("Settings of this job (the form above is for the next one)"):
            st.json(config.to_dict(), expanded=False)
    widgets.job_controls(job, snap, key=job.id)
    widgets.job_progress(snap)
    widgets.show_job_grids(snap)
    widgets.show_curves(snap.history, key_prefix=f"train-{job.id}")
    was_live = st.session_state.get(f"live-{job.id}", False)
    st.session_state[f"live-{job.id}"] = not snap.done
    if snap.done and was_live:
        st.rerun()  # the whole page: re-enables Start and stops the timer


live_running = st.fragment(run_every=2)(_live)
live_static = st.fragment(_live)

st.subheader("Live training")
job_id = _current_job_id()
if job_id is None:
    st.info("No training job yet. Choose settings above and press Start training, or use Home's first run.")
else:
    current = registry().get(job_id)
    if current is not None and current.alive:
        live_running(job_id)
    else:
        live_static(job_id)
