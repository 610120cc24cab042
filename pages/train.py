"""Train: choose data, missingness and hyper-parameters; start, pause, resume, stop; watch it learn live."""

from __future__ import annotations

import time

import streamlit as st

from misgan_core import MASK_ACTIVATIONS, MASK_MODELS, PRECISIONS, MisGANConfig, catalog, native_bf16, pick_device
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
    batch_size = h1.number_input(
        "Batch size", 1, 4096, 64, key="train-batch", help="Examples per minibatch. Paper: 64 (WGAN-GP's default)."
    )
    n_critic = h2.number_input(
        "Critic steps per generator step",
        1,
        50,
        5,
        key="train-ncritic",
        help="Critic updates (one minibatch each) before every generator update. Paper: 5 (WGAN-GP).",
    )
    alpha = h3.number_input(
        "alpha (Gm's share of L_x)",
        0.0,
        10.0,
        0.2,
        0.05,
        key="train-alpha",
        help="Eq. 7: Gm minimises L_m + alpha L_x, so masks are also judged with the data. Paper: 0.2. Left "
        "at 0.2 with a mask model that sees the image, 1 is used (its mechanism is learnt from L_x).",
    )
    beta = h4.number_input(
        "beta (Gx's share of L_i)",
        0.0,
        10.0,
        0.1,
        0.05,
        key="train-beta",
        help="Eq. 10: with the imputer, Gx also minimises beta L_i, pulling its samples toward imputed "
        "data. Paper: 0.1.",
    )
    lr = h1.number_input(
        "Learning rate",
        1e-6,
        1e-1,
        1e-4,
        format="%.5f",
        key="train-lr",
        help="Adam (betas 0.5, 0.9) for Gx, Gm and the critics; the imputer uses 2e-4. Paper: 1e-4.",
    )
    tau = h2.number_input(
        "tau (fill value of f_tau)",
        -1.0,
        1.0,
        0.0,
        0.1,
        key="train-tau",
        help="Eq. 3: the masking operator writes tau where a pixel is missing. Paper: 0.",
    )
    temperature = h3.number_input(
        "Mask temperature lambda",
        0.01,
        5.0,
        None,
        0.01,
        key="train-temp",
        placeholder="auto: 0.66; 3 for self-masking",
        help="Gm's output sigmoid(x / lambda): lower is closer to binary masks. Paper: 0.66. Left empty, each "
        "mask model takes its own: the paper's 0.66, and 3 for the self-masking model, whose relaxed masks then "
        "still pass gradients to bright pixels (its data critic's draws sharpen to 0.25 where the learnt slope "
        "is near 0, as under MCAR).",
    )
    mask_model = h4.selectbox(
        "Mask model",
        list(MASK_MODELS),
        key="train-mask-model",
        help="Gm: independent of the image (the paper; right for MCAR missingness), self-masking (each "
        "pixel's own value sets its chance to be missing) or conditional Gm(eps, x), for missingness that "
        "depends on the data. The last two make the data critic judge masked data and masks jointly.",
    )
    mask_activation = h1.selectbox(
        "Mask activation",
        list(MASK_ACTIVATIONS),
        key="train-mask-activation",
        help="sigmoid(x / lambda) as in the paper, or 'stretched' (the released code's default): masks reach "
        "exact 0 and 1, which high missing rates need (at 90% dropout the plain sigmoid did not learn).",
    )
    imputer_sees_mask = h3.checkbox(
        "Imputer sees the mask",
        value=False,
        key="train-imputer-sees-mask",
        help="Give Gi the mask as a second input (the released code's MaskImputer): under dropout it cannot "
        "otherwise tell an observed pixel from noise of the same value.",
    )
    ema = h1.number_input(
        "Weight average (EMA decay)",
        0.0,
        0.9999,
        0.0,
        step=0.001,
        format="%.4f",
        key="train-ema",
        help="Sample and impute with exponential moving averages of Gx, Gm and Gi's weights (e.g. 0.999), "
        "which damps the GAN's step-to-step swings. 0: off, as in the paper.",
    )
    imputer_critic_sees_mask = h2.checkbox(
        "Imputer's critic sees the mask",
        value=False,
        key="train-imputer-critic-sees-mask",
        help="Di judges (image, mask) pairs: each imputation against a Gx sample carrying the same mask, so "
        "it knows which pixels the imputer made. A conditional critic; the paper's Di sees images only.",
    )
    native = native_bf16(pick_device("auto"))
    precision = h3.selectbox(
        "Precision",
        list(PRECISIONS),
        key="train-precision",
        help="bf16: the training step's matrix products in bfloat16 (weights, Adam and every FID stay float32), "
        "about twice the steps per second where the processor has bfloat16 instructions. This machine: "
        + ("has them." if native else "has none, so bf16 would be slower here."),
    )
    seed = h4.number_input(
        "Seed", 0, 1_000_000, 0, key="train-seed", help="Initial weights, noise and batch order; the same "
        "seed and settings train the same run."
    )
    fid_every = h1.number_input(
        "Live FID every N steps (0 = off)",
        0,
        100_000,
        default_fid,
        key="train-fid",
        help="A cheap FID of 1,000 Gx samples (and the imputer's imputation FID) for the live curves.",
    )
    sample_every = h2.number_input(
        "Save sample grids every N steps",
        1,
        100_000,
        100,
        key="train-sample",
        help="Grids of Gx and Gm samples and imputations written to the run folder's samples/.",
    )

config = None
if dataset:
    config = MisGANConfig(
        data=spec,
        arch=arch,
        steps=int(steps),
        batch_size=int(batch_size),
        n_critic=int(n_critic),
        alpha=None if mask_model != "independent" and alpha == 0.2 else float(alpha),
        beta=float(beta),
        lr=float(lr),
        tau=float(tau),
        mask_model=mask_model,
        mask_activation=mask_activation,
        imputer_sees_mask=bool(imputer_sees_mask),
        imputer_critic_sees_mask=bool(imputer_critic_sees_mask),
        ema=float(ema),
        precision=precision,
        temperature=None if temperature is None else float(temperature),
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
