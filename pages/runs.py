"""Runs: every run folder with its config and last metrics; resume, delete, download, export imputations."""

from __future__ import annotations

import json

import streamlit as st

from misgan_core import RunDir, catalog, export
from workbench import state, widgets

st.title("Runs")
root = state.runs_root()
st.caption(f"Run folders under `{root}` (set MISGAN_RUNS_DIR to use another folder).")

infos = catalog.list_runs(include_demo=False)
if not infos:
    st.info(
        "No runs yet. Start one on the Train page (or Home's first run); fitted baselines from Compare show "
        "here too."
    )
    st.stop()


def _status(path: object) -> str:
    job = catalog.job_for_run(path)  # type: ignore[arg-type]
    return job.snapshot().status if job is not None else "-"


def _num(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) else ""


table = [
    {
        "run": r.name,
        "what": r.title,
        "method": r.method.title if r.method is not None else r.kind,
        "imputer": "yes" if r.imputes else "no",
        "step": r.step,
        "training time (s)": _num(r.seconds),
        "job": _status(r.path),
        "w_x": _num(r.last.get("w_x")),
        "live FID": _num(r.last.get("fid")),
        "checkpoint": "yes" if r.has_checkpoint else "no",
        "problem": r.error or "",
    }
    for r in infos
]
st.dataframe(table, hide_index=True, width="stretch")

# The selection is the run's folder, checked against the folders on disk before the selector is drawn: after a
# delete (here or in another session) the selector and everything below it name the same run. The labels never
# change while a run trains; its live step count is shown beside the selector.
pick_col, progress_col = st.columns([3, 2], vertical_alignment="bottom")
info = widgets.run_picker("Run", infos, key="runs-selected", where=pick_col)
assert info is not None  # infos is not empty


@st.fragment(run_every=3)
def _progress() -> None:
    st.markdown(f"**{info.name}**: {widgets.run_progress(catalog.run_info(info.path))}")


with progress_col:
    _progress()
job = catalog.job_for_run(info.path)
busy = job is not None and job.alive

if info.error:
    st.error(f"This run folder has a problem: {info.error}")

tab_overview, tab_actions, tab_export = st.tabs(
    ["Overview", "Resume, download, delete", "Export imputations"]
)

with tab_overview:
    order = ["data", "gx", "gm", "imputed"]
    samples = sorted(
        (info.path / "samples").glob("*_latest.png"),
        key=lambda p: order.index(p.stem[:-7]) if p.stem[:-7] in order else 99,
    )
    if samples:
        cols = st.columns(min(4, len(samples)))
        for col, png in zip(cols, samples, strict=False):
            name = png.stem[: -len("_latest")]
            col.image(str(png), caption=widgets.GRID_TITLES.get(name, name), width="stretch")
    history = RunDir(info.path).read_metrics()
    live_fid = info.method is not None and info.method.live_fid
    widgets.show_curves(history, key_prefix=f"runs-{info.name}", live_fid=live_fid)
    with st.expander("Config"):
        st.code(json.dumps(info.config, indent=2, sort_keys=True), language="json")

with tab_actions:
    if info.method is not None and info.method.trainable:
        r1, r2 = st.columns([1, 2])
        more = r1.number_input(f"More {info.method.step_unit}", 1, 1_000_000, 500, step=100, key="runs-more")
        if r2.button(
            "Resume training",
            key="runs-resume",
            disabled=busy or not info.has_checkpoint,
            help="Continues from the last checkpoint in the background; watch it on the Train page.",
        ):
            with widgets.guard(f"Could not resume {info.name}"):
                job = catalog.resume_job(info.path, int(more))
                st.session_state["train_job"] = job.id
                st.success(f"Resumed {info.name}; follow it on the Train page.")
        if busy:
            st.caption("This run is training right now.")
    if info.has_checkpoint:
        st.download_button(
            "Download checkpoint (.zip)",
            data=lambda: export.run_zip_bytes(info.path),
            file_name=f"{info.name}.zip",
            mime="application/zip",
            key="runs-download",
            help="config.json, model.safetensors, state.pt, metrics.jsonl and the latest grids.",
        )
    st.divider()
    confirm = st.checkbox(
        f"Yes, delete {info.name} and every file in it", key=f"runs-confirm-{info.name}", disabled=busy
    )
    if st.button("Delete run", key="runs-delete", type="primary", disabled=not confirm or busy):
        with widgets.guard(f"Could not delete {info.name}"):
            catalog.delete_run(info.path)
            st.session_state.pop(f"runs-confirm-{info.name}", None)
            st.toast(f"Deleted {info.name}")
            st.rerun()

with tab_export:
    if not info.imputes or not info.usable:
        st.caption(
            "Only runs with an imputer (MisGAN with Gi, or a fitted baseline) and a checkpoint can export "
            "imputed data."
        )
    else:
        e1, e2, e3 = st.columns(3)
        n = e1.number_input(
            "Examples (from the start of the run's data)", 1, 100_000, 500, step=100, key="runs-export-n"
        )
        draws = e2.number_input("Draws per example", 1, 16, 1, key="runs-export-draws")
        seed = e3.number_input("Seed", 0, 1_000_000, 0, key="runs-export-seed")
        if st.button("Prepare the export", key="runs-export"):
            with widgets.guard(f"Export of {info.name} failed"), st.spinner(f"Imputing with {info.name}…"):
                run = widgets.load_run(info.path)
                data = run.data.subset(slice(0, int(n)))
                bundle = export.export_imputed(
                    run.require_imputer(),
                    data.x,
                    data.m,
                    draws=int(draws),
                    seed=int(seed),
                    meta={
                        "run": info.name,
                        "run_dir": str(info.path),
                        "what": widgets.run_label(info),
                        "step": run.budget()["steps"],
                        "kind": info.kind,
                        "draws": int(draws),
                        "seed": int(seed),
                        "dataset": data.name,
                    },
                )
                st.session_state["runs-bundle"] = (str(info.path), run.budget()["steps"], bundle)
        held = st.session_state.get("runs-bundle")
        if held and held[0] == str(info.path):
            _, at_step, bundle = held
            st.success(f"{info.name} (at step {at_step:,}): {bundle.examples} examples x {bundle.draws} "
                       f"draw(s) ready as {info.name}-imputed.npz and {info.name}-imputed-png.zip.")
            d1, d2 = st.columns(2)
            d1.download_button(
                "Download .npz (x_imputed, m, x_input)",
                bundle.npz,
                f"{info.name}-imputed.npz",
                mime="application/octet-stream",
                key="runs-npz",
            )
            d2.download_button(
                "Download PNGs (.zip)",
                bundle.png_zip,
                f"{info.name}-imputed-png.zip",
                mime="application/zip",
                key="runs-zip",
            )
