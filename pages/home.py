"""Home: what MisGAN does, the device, the datasets, running jobs, and a one-click first run."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from misgan_core import catalog
from misgan_core.jobs import registry
from workbench import state, widgets

st.title("MisGAN Workbench")
st.markdown(
    "**MisGAN learns a generative model of complete images from incomplete ones** "
    "([Li, Jiang and Marlin, ICLR 2019](https://openreview.net/forum?id=S1lDV3RcKm))."
)
st.subheader("Start here")
quick = state.quickstart_config()
running = catalog.running_misgan_job(quick)
speed = state.measured_speed(quick)
if speed:
    # The promise is this machine's own measurement: a live job's speed, else the last run like it.
    when = (f"At the {speed:.2f} generator steps per second this machine measured for such a run, the "
            f"{quick.steps:,} steps take about {widgets.fmt_seconds(quick.steps / speed)}.")
else:
    when = "The Train page shows its speed and the time left as soon as it starts."
c1, c2 = st.columns([1, 3], vertical_alignment="center")
if c1.button(
    "Start a first run",
    type="primary",
    disabled=running is not None,
    key="home-quickstart",
    help="Already running: see it on the Train page or under Jobs below." if running else None,
):
    with widgets.guard("Could not start the first run"):
        job, started = catalog.start_misgan_job(quick)
        st.session_state["train_job"] = job.id
        st.switch_page("../pages/train.py")
c2.markdown(
    f"One click trains MisGAN with its imputer on **mnist-5k** (5,000 real MNIST digits that ship with the "
    f"app), each pixel missing with probability 50%, with the {quick.arch.upper()} networks for "
    f"{quick.steps:,} generator steps on this machine's {'GPU' if state.on_gpu() else 'CPU'}. {when} "
    f"Watch the samples turn into digits on the Train page; when it is done (or stopped), paint on a digit "
    f"in Inpaint."
)
st.page_link("../pages/train.py", label="Or choose every setting on the Train page", icon=":material/tune:")

st.subheader("How MisGAN works")
st.markdown(
    "MisGAN trains two generators side by side: a *mask generator* Gm that learns where pixels go missing, and a *data "
    "generator* Gx whose complete samples are masked with Gm's masks and judged against the real incomplete "
    "data by a critic, so Gx must produce complete images whose every masked view looks real. An optional "
    "*imputer* Gi then fills in the missing pixels of a real example, drawing a different plausible "
    "completion each time ([Li, Jiang and Marlin, ICLR 2019](https://openreview.net/forum?id=S1lDV3RcKm); "
    "[the authors' code](https://github.com/steveli/misgan))."
)

left, right = st.columns([3, 2])
with left:
    st.subheader("How it fits together (the paper's figure 1)")
    st.graphviz_chart(
        """
        digraph misgan {
          rankdir=TB; nodesep=0.25; ranksep=0.3;
          node [shape=box, style="rounded,filled", fillcolor="#f4f6fb", fontname="Helvetica", fontsize=16];
          edge [fontsize=13, fontname="Helvetica"];
          z [label="noise z", shape=ellipse, fillcolor="#ffffff"];
          e [label="noise ε", shape=ellipse, fillcolor="#ffffff"];
          real [label="real incomplete data (x, m)", shape=folder, fillcolor="#e6f5e6"];
          Gx [label="Gx: data generator", fillcolor="#dbe8ff"];
          Gm [label="Gm: mask generator", fillcolor="#ffe5cc"];
          f [label="f_τ(Gx(z), Gm(ε))", fillcolor="#ffffff"];
          fr [label="f_τ(x, m)", fillcolor="#ffffff"];
          Dx [label="Dx: data critic", fillcolor="#f7d6d6"];
          Dm [label="Dm: mask critic", fillcolor="#f7d6d6"];
          {rank=same; z; e; real}
          z -> Gx; e -> Gm; Gx -> f; Gm -> f; f -> Dx [label=" fake"];
          real -> fr; fr -> Dx [label=" real"];
          Gm -> Dm [label=" fake masks"]; real -> Dm [label=" real masks"];
        }
        """,
        width="stretch",
    )
with right:
    st.subheader("This machine")
    info = state.device_info()
    st.metric("Training device", "GPU" if info.kind == "cuda" else "CPU")
    st.caption(info.line())
    st.subheader("Datasets")
    statuses = state.datasets()
    st.table(
        [{"dataset": s.name, "status": s.status, "shape": "x".join(map(str, s.shape))} for s in statuses]
    )
    absent = [s for s in statuses if s.status != "present"]
    if absent:
        with st.expander("How to get the others"):
            for s in absent:
                st.markdown(f"- **{s.name}**: {s.how_to_get}")

st.subheader("Jobs")


@st.fragment(run_every=3)
def jobs_panel() -> None:
    # Jobs whose run folder was deleted since are no longer listed.
    snaps = [job.snapshot() for job in registry().jobs() if job.alive or Path(job.key).exists()]
    if not snaps:
        st.caption("No training jobs in this server process yet.")
        return
    for snap in reversed(snaps):
        st.markdown(widgets.job_summary(snap))
        st.progress(
            snap.progress,
            text=f"{snap.steps_per_s:.2f} steps/s, ETA {widgets.fmt_seconds(snap.eta_s)}"
            if snap.status == "running"
            else snap.status,
        )
        if snap.error:
            st.error(f"{snap.label} failed: {snap.error}")


jobs_panel()
