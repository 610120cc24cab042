"""Inpaint: paint a mask on an image and see K imputer draws, their mean and per-pixel spread."""

from __future__ import annotations

import streamlit as st
import torch

from misgan_core import MisGANError, catalog, export
from misgan_core.grids import show_missing_colour, to_pil
from workbench import widgets

SOURCES = ["An example from the run's data", "Upload a PNG or JPEG"]
PAINTING_DEMO = "demo-mnist-fc-rect"  # measured on free-hand strokes: docs/inpaint-demo/results.md

st.title("Inpaint")
st.caption(
    "Choose a trained MisGAN run with an imputer, pick or upload an image, paint the region that is "
    "missing (or the region you keep), and see several completions at once."
)

try:
    from streamlit_drawable_canvas import st_canvas
except Exception as err:  # the canvas package is a runtime dependency of this page only
    st.error(
        f"The drawing canvas is not available ({widgets.error_text(err)}). Install it with "
        f"`pip install streamlit-drawable-canvas`."
    )
    st.stop()

all_methods = [r for r in catalog.list_runs() if r.usable and r.imputes]
runs = [r for r in all_methods if not r.method.baseline]  # MisGAN's: the workbench's own method
if not runs:
    st.info(
        "No trained MisGAN run with an imputer yet. Train one on the Train page with **Also train the "
        "imputer** ticked (Home's first run does), then come back."
    )
    st.page_link("../pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

# The page opens on the shipped demo that fills free-hand strokes best (trained on varied rectangles; see
# docs/inpaint-demo/results.md); the selection is the run's folder, so a run that trains keeps being the one chosen.
painting = next((r for r in runs if r.demo and r.name == PAINTING_DEMO), None)
pick_col, progress_col = st.columns([3, 2], vertical_alignment="bottom")
chosen = widgets.run_picker("Trained run", runs, key="inpaint-run", default=painting, where=pick_col)
assert chosen is not None
run_path = str(chosen.path)
progress_col.caption(widgets.run_progress(chosen))
run = None
with widgets.guard(f"Could not load {chosen.path.name}"):
    run = widgets.load_run(chosen.path)
if run is None:
    st.stop()
c, h, w = run.shape
budget = run.budget()
st.caption(
    f"Model: {run.title} for {c}x{h}x{w} images; {budget['epochs']} epochs, "
    f"{widgets.fmt_seconds(budget['seconds'])} of training."
)

left, right = st.columns([1, 1], gap="large")
with left:
    source = st.radio(
        "Image",
        SOURCES,
        index=widgets.kept_index("inpaint-source", SOURCES[0], SOURCES), key="inpaint-source",
        horizontal=True,
    )
    x = None
    truth = False
    if source.startswith("An example"):
        # an example kept from a run with more examples is clamped into this one's
        index = st.number_input(f"Example (0-{len(run.data) - 1})", 0, len(run.data) - 1, key="inpaint-index",
                                value=widgets.kept("inpaint-index", 0, bounds=(0, len(run.data) - 1)))
        x = run.data.x[int(index) : int(index) + 1]
        truth = run.data.ground_truth
    else:
        upload = st.file_uploader(
            "PNG or JPEG image",
            type=["png", "jpg", "jpeg"],
            key="inpaint-upload",
            help=f"Converted to {c} channel(s) and {h}x{w} pixels (centre crop, resize).",
        )
        invert = st.selectbox(
            "Invert grey levels",
            ["auto", "yes", "no"],
            index=widgets.kept_index("inpaint-invert", "auto", ["auto", "yes", "no"]), key="inpaint-invert",
            help="MNIST digits are light on black: 'auto' inverts a dark drawing on white.",
        )
        if upload is None:
            st.info("Upload an image to paint on.")
            st.stop()
        data = upload.getvalue()
        notes: list[str] = []
        try:
            x = export.image_to_tensor(
                data, run.shape, invert={"auto": "auto", "yes": True, "no": False}[invert], notes=notes
            )
        except export.ImageInputError as err:
            st.error(f"Cannot use {upload.name}: {err}")
            st.stop()
        if notes:
            st.info(f"{upload.name}: " + "; ".join(notes) + ".")

    t1, t2 = st.columns(2)
    tool = t1.radio(
        "Tool",
        ["Brush", "Rectangle"],
        index=widgets.kept_index("inpaint-tool", "Brush", ["Brush", "Rectangle"]), key="inpaint-tool",
        horizontal=True,
        help="Rectangle: drag a box; exactly the pixels inside it are painted.",
    )
    meaning = t2.radio(
        "Paint marks",
        ["missing", "observed"],
        index=widgets.kept_index("inpaint-meaning", "missing", ["missing", "observed"]), key="inpaint-meaning",
        horizontal=True,
        help="'missing': painted pixels are hidden from the model. 'observed': only painted pixels are kept.",
    )
    brush = st.slider("Brush size (canvas pixels)", 5, 60, value=widgets.kept("inpaint-brush", 25), key="inpaint-brush",
                      disabled=tool != "Brush")
    scale = max(2, 280 // max(h, w))
    st.caption(f"Paint on the {w}x{h} image, shown {scale}x larger. Use the canvas toolbar to undo or clear.")
    # No grid padding around the background, so canvas pixel (i, j) lies on image pixel (i // scale, j // scale),
    # the same blocks mask_from_canvas averages; rectangles are drawn without an outline, so they cover
    # exactly what was dragged. The key leaves out the example and the tool: the painted mask stays when
    # either changes.
    result = st_canvas(
        fill_color="rgba(255, 64, 64, 1.0)",
        stroke_width=int(brush) if tool == "Brush" else 0,
        stroke_color="rgba(255, 64, 64, 1.0)",
        background_image=to_pil(x, nrow=1, scale=scale, pad=0),
        update_streamlit=True,
        height=h * scale,
        width=w * scale,
        drawing_mode="freedraw" if tool == "Brush" else "rect",
        return_image_data=True,
        key=f"inpaint-canvas-{h}x{w}",
    )

with right:
    k1, k2 = st.columns(2)
    draws_k = k1.slider("K imputer draws", 1, 32, value=widgets.kept("inpaint-k", 8), key="inpaint-k")
    seed = k2.number_input("Seed", 0, 1_000_000, value=widgets.kept("inpaint-seed", 0), key="inpaint-seed")
    try:
        m = export.mask_from_canvas(getattr(result, "image_data", None), (h, w), paint_marks=meaning)
    except MisGANError as err:
        st.error(f"Cannot read the painted mask: {err}")
        st.stop()
    observed = float(m.mean())
    hidden = int((m == 0).sum())
    st.metric("Missing pixels", f"{1 - observed:.0%}", help="the share of the image's pixels the mask hides")
    st.caption(f"{hidden:,} of {h * w:,} pixels missing")
    if observed >= 1.0:
        st.info("Nothing is missing yet: paint over part of the image (or switch 'Paint marks' to observed).")
        st.stop()
    draws = None
    with widgets.guard("Imputation failed"):
        gen = torch.Generator().manual_seed(int(seed))
        draws = run.require_imputer().impute(x, m, draws=int(draws_k), generator=gen)
    if draws is None:
        st.stop()
    mean, std = export.summarise_draws(draws)
    big = widgets.grid_scale(h, 140)
    for col, title, image in zip(
        st.columns(3),
        ("Input (missing in red)", f"Mean of {int(draws_k)} draws", "Per-pixel std (white = uncertain)"),
        (show_missing_colour(x, m), mean, export.std_image(std)),
        strict=True,
    ):
        # Titles go under the images (captions), so the three images line up however the titles wrap.
        col.image(to_pil(image, nrow=1, scale=big, pad=0), caption=title)
    st.markdown(f"**{int(draws_k)} imputations** (each a different draw of the imputer's noise)")
    widgets.show_grid(draws[:, 0], None, nrow=min(int(draws_k), 4), target=84)

st.subheader("Other trained methods on the same input and mask")
others = [
    mm
    for mm in all_methods
    if str(mm.path) != run_path and mm.shape == run.shape
]
if not others:
    st.caption(
        "No other trained method for images of this size yet. Fit GAIN, ConvAC, MF, mean or zero "
        "imputation on the Compare page, or train another MisGAN run, to see them here."
    )
else:
    # Pre-selected: finished runs trained for at least a tenth of their budget (not a 4-step trial, not a
    # run still training); any other can be added.
    picked = widgets.run_picker_many("Methods", others, key="inpaint-others",
                                     default=catalog.finished_runs(others)[:4])
    results = {"MisGAN (this run)": draws[0, :]} if picked else {}
    for mm in picked:
        with widgets.guard(f"{mm.title} could not impute"):
            other = widgets.load_run(mm.path)
            out = export.impute_dataset_draws(other.require_imputer(), x, m, draws=1, seed=int(seed))
            short = mm.method.title
            name = widgets.run_label(mm) if not mm.method.baseline or short in results else short
            results[name] = out[0]
    if picked:
        shown = {"Input": show_missing_colour(x, m)}
        if truth:
            shown["Truth"] = x
        shown.update(results)
        for col, (title, image) in zip(st.columns(len(shown)), shown.items(), strict=True):
            col.image(to_pil(image, nrow=1, scale=widgets.grid_scale(h, 112), pad=0), caption=title)
