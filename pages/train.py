"""Train: choose data, missingness and hyper-parameters; start, pause, resume, stop; watch it learn live."""

from __future__ import annotations

import streamlit as st

from misgan_core import MisGANConfig, catalog
from misgan_core.jobs import registry
from misgan_core.metrics import default_fid_every
from workbench import state, widgets

st.title("Train MisGAN")
st.caption(
    "Training runs in the background on the server: leaving this page or closing the browser does not "
    "stop it, and every browser session sees the same jobs."
)

settings, preview = st.columns([1, 1], gap="large")
with settings:
    st.subheader("Data and missingness")
    dataset = widgets.dataset_picker("train")
    own_data = dataset is not None and dataset not in {s.name for s in state.datasets()}
    if own_data:
        st.info("Your own data brings its masks (alpha channel, m array or NaN), so no missingness is drawn.")
        params = {"mask": "square", "mask_size": 14, "missing_rate": 0.5, "missing_rate_range": None}
    else:
        params = widgets.missingness_picker("train")
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
c1, c2, c3 = st.columns(3)
arch = widgets.pick(
    c1.radio,
    "Architecture",
    {"fc": "FC (fast on CPU)", "conv": "Conv (paper's best, GPU)"},
    index=1 if gpu else 0,
    key="train-arch",
    horizontal=True,
    help="Appendix D of the paper. On a CPU, FC shows recognisable digits within minutes.",
)
steps = c2.number_input(
    "Generator steps",
    1,
    1_000_000,
    5000 if gpu else 2000,
    step=100,
    key="train-steps",
    help="Each generator step follows n_critic critic steps.",
)
imputer = c3.checkbox(
    "Train the imputer Gi too",
    value=True,
    key="train-imputer",
    help="Inpaint, Compare and exports need it; it costs about a third more time per step.",
)
default_fid = default_fid_every(dataset) if dataset and not own_data else 0
with st.expander("Hyper-parameters (defaults are the paper's)"):
    h1, h2, h3, h4 = st.columns(4)
    batch_size = h1.number_input("Batch size", 1, 4096, 64, key="train-batch")
    n_critic = h2.number_input("Critic steps per generator step", 1, 50, 5, key="train-ncritic")
    alpha = h3.number_input("alpha (Gm's share of L_x)", 0.0, 10.0, 0.2, 0.05, key="train-alpha")
    beta = h4.number_input("beta (Gx's share of L_i)", 0.0, 10.0, 0.1, 0.05, key="train-beta")
    lr = h1.number_input("Learning rate", 1e-6, 1e-1, 1e-4, format="%.5f", key="train-lr")
    tau = h2.number_input("tau (fill value of f_tau)", 0.0, 1.0, 0.0, 0.1, key="train-tau")
    temperature = h3.number_input("Mask temperature lambda", 0.01, 5.0, 0.66, 0.01, key="train-temp")
    seed = h4.number_input("Seed", 0, 1_000_000, 0, key="train-seed")
    fid_every = h1.number_input("Live FID every N steps (0 = off)", 0, 100_000, default_fid, key="train-fid")
    sample_every = h2.number_input("Save sample grids every N steps", 1, 100_000, 100, key="train-sample")

config = None
if dataset:
    config = MisGANConfig(
        data=spec,
        arch=arch,
        steps=int(steps),
        batch_size=int(batch_size),
        n_critic=int(n_critic),
        alpha=float(alpha),
        beta=float(beta),
        lr=float(lr),
        tau=float(tau),
        temperature=float(temperature),
        seed=int(seed),
        imputer=bool(imputer),
        fid_every=int(fid_every),
        sample_every=int(sample_every),
        checkpoint_every=max(100, int(sample_every)),
    )
    try:
        config.validate()
    except ValueError as err:
        st.error(f"These settings cannot train: {err}")
        config = None

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


def _picked() -> None:
    st.session_state["train_job"] = str(st.session_state["train-job-select"]).split(" · ")[0]


def _current_job_id() -> str | None:
    jobs = registry().jobs()
    if not jobs:
        return None
    ids = [j.id for j in jobs]
    wanted = st.session_state.get("train_job")
    if wanted not in ids:
        alive = [j for j in jobs if j.alive]
        wanted = (alive or jobs)[-1].id
    if len(jobs) > 1:
        labels = {j.id: f"{j.id} · {j.label}" for j in reversed(jobs)}
        st.session_state["train-job-select"] = labels[wanted]
        st.selectbox("Job", list(labels.values()), key="train-job-select", on_change=_picked)
    st.session_state["train_job"] = wanted
    return wanted


def _live(job_id: str) -> None:
    job = registry().get(job_id)
    if job is None:
        st.caption("That job is gone (the server restarted); its run folder is listed on the Runs page.")
        return
    snap = job.snapshot()
    st.markdown(widgets.job_summary(snap) + f"  \nRun folder: `{job.key}`")
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
