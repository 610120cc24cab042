"""Train: choose data, missingness and hyper-parameters; start, pause, resume, stop; watch it learn live."""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from misgan_core import MisGANConfig, MisGANError, catalog, native_bf16, pick_device
from misgan_core.jobs import registry
from misgan_core.methods import METHODS
from misgan_core.options import SECTIONS, FormField, form, from_form
from workbench import state, widgets

st.title("Train MisGAN")
st.caption(
    "Training runs in the background on the server: leaving this page or closing the browser does not "
    "stop it, and every browser session sees the same jobs."
)

# The live view of a job that is training goes here, above the form (Home's first run opens on it); a
# finished job's view stays below the form.
live_on_top = st.container()

settings, preview = st.columns([1, 1], gap="large")
with settings:
    st.subheader("Data and missingness")
    dataset, own_data, params = widgets.data_picker("train")
    mask_seed = 0
    if not own_data:  # own data brings its masks: there is nothing to seed
        mask_seed = st.number_input(
            "Mask seed (masks are drawn once per example)", 0, 10_000,
            value=widgets.kept("train-mask-seed", 0), key="train-mask-seed",
        )
    limit = st.number_input(
        "Use only the first N examples (0 = all)", 0, 1_000_000, step=500,
        value=widgets.kept("train-limit", 0), key="train-limit",
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
    """One option's widget; returns its value (None: a number left empty, decided when the run is made).

    Every widget takes its value from `widgets.kept`, so the form survives visits to other pages.
    """
    if field.kind == "checkbox":
        return where.checkbox(field.label, value=widgets.kept(field.key, field.value), key=field.key,
                              help=field.help)
    if field.kind in ("select", "radio"):
        return widgets.pick(where.radio if field.kind == "radio" else where.selectbox, field.label, field.choices,
                            index=list(field.choices).index(field.value), key=field.key, help=field.help,
                            **field.kwargs)
    if field.kind == "number":
        if isinstance(field.kwargs.get("max_value"), int):
            return _whole_number(field, where)
        return where.number_input(field.label, value=widgets.kept(field.key, field.value), key=field.key,
                                  help=field.help, placeholder=field.placeholder, **field.kwargs)
    return where.text_input(field.label, value=widgets.kept(field.key, field.value or ""), key=field.key,
                            help=field.help) or None


def _whole_number(field: FormField, where: Any) -> int | None:
    """A whole-number option drawn as a float field: the browser reads what is typed in an integer field with
    parseInt, so "1e9" arrived as 1; read as a float it arrives whole, and past the option's maximum it is
    capped with a message."""
    low, high = field.kwargs.get("min_value"), field.kwargs["max_value"]
    kwargs = {k: float(v) for k, v in field.kwargs.items() if k in ("min_value", "step")}
    start = widgets.kept(field.key, None if field.value is None else float(field.value))
    typed = where.number_input(field.label, value=None if start is None else float(start), key=field.key,
                               help=field.help, placeholder=field.placeholder, format="%.0f", max_value=1e15,
                               **kwargs)
    if typed is None:
        return None
    if typed > high:
        where.warning(f"{field.label}: {typed:,.0f} is more than this page trains; using {high:,}.")
    return int(min(high, max(low if low is not None else typed, round(typed))))


values: dict[str, Any] = {}
main_fields = [f for f in FORM if f.section == "main"]
for field, column in zip(main_fields, st.columns(len(main_fields)), strict=True):
    values[field.name] = _draw(field, column)
st.caption("Recipe: *paper* is appendix D exactly; *recommended* (the default) adds weight averages, an imputer and "
           "imputer critic that see the mask, and Adam's beta1 0.5, which scored better at the paper's budget. For "
           "runs of a few thousand steps *paper* did as well or better (docs/reproduction.md, Recipes). Options set "
           "below override the recipe.")
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
        f"exists). {'Already training: see Live training.' if running else ''}"
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
    return [j for j in registry().jobs() if j.kind in METHODS and not METHODS[j.kind].baseline]


def _picked() -> None:
    st.session_state["train_job"] = st.session_state["train-job-select"]


def _wanted_job() -> tuple[list, str | None]:
    """The MisGAN jobs, newest first, and the one to show: the one asked for (started here, on Home or on
    Runs, or chosen in the selector), else the newest live one, else the newest."""
    jobs = list(reversed(_misgan_jobs()))
    if not jobs:
        return [], None
    wanted = st.session_state.get("train_job")
    if wanted not in [j.id for j in jobs]:
        alive = [j for j in jobs if j.alive]
        wanted = (alive or jobs)[0].id
    st.session_state["train_job"] = wanted
    return jobs, wanted


def _job_selector(jobs: list, wanted: str) -> None:
    """The job selector, keyed by job id; the labels say what each trains and never change."""
    if len(jobs) < 2:
        return
    labels = {j.id: f"{j.label} (started {time.strftime('%H:%M:%S', time.localtime(j.started_at))})" for j in jobs}
    st.session_state["train-job-select"] = wanted  # follows a job chosen elsewhere; drawn without index=
    st.selectbox("Job", list(labels), key="train-job-select", format_func=labels.get, on_change=_picked)


def _live(job_id: str) -> None:
    job = registry().get(job_id)
    if job is None:
        st.caption("That job is gone (the server restarted); its run folder is listed on the Runs page.")
        return
    snap = job.snapshot()
    st.markdown(widgets.job_summary(snap) + f"  \nRun folder: `{job.key}`")
    config = getattr(job.trainer, "config", None)
    if config is not None:
        with st.expander("Settings of this job (the form is for the next one)"):
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

jobs, job_id = _wanted_job()
current = registry().get(job_id) if job_id is not None else None
with live_on_top if current is not None and current.alive else st.container():
    st.subheader("Live training")
    _job_selector(jobs, job_id)
    if job_id is None:
        st.info("No training job yet. Choose settings above and press Start training, or use Home's first run.")
    elif current is not None and current.alive:
        live_running(job_id)
    else:
        live_static(job_id)
    if current is not None and current.alive:
        st.divider()
        st.subheader("Start another training")
