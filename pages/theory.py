"""Theory: the paper's section 3 on a tiny discrete problem, computed exactly."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from misgan_core import MisGANError, theory
from workbench import widgets

st.title("Theory: does the fill value τ matter?")
st.caption(
    "Section 3 of [Li, Jiang and Marlin, *MisGAN: Learning from Incomplete Data with Generative Adversarial "
    "Networks*, ICLR 2019](https://openreview.net/forum?id=S1lDV3RcKm)."
)
st.markdown(
    "Take *n* pixels that each take a value in a small set P. A mask distribution q says which pixels are "
    "observed; masking a vector s with f_τ replaces its missing pixels by τ. The **transition matrix** "
    "T<sub>q,τ</sub> sends a data distribution p<sub>x</sub> to the distribution of masked vectors: "
    "T<sub>q,τ</sub>(t, s) = Σ q(m) over the masks m with f<sub>τ</sub>(s, m) = t. MisGAN effectively solves "
    "T<sub>q,τ</sub> p = T<sub>q,τ</sub> p<sub>x</sub> for p ≥ 0. **Theorem 1:** for a fixed q, every "
    "T<sub>q,τ</sub> with τ in P has the same null space, so whether p<sub>x</sub> can be recovered does not "
    "depend on τ.",
    unsafe_allow_html=True,
)

c1, c2, c3 = st.columns(3)
n = c1.number_input("Pixels n", 1, 4, value=widgets.kept("theory-n", 2), key="theory-n")
# Only sizes the exact analysis can take are offered: |P|^n data vectors, at most theory.MAX_VECTORS.
max_k = max(2, min(4, int(theory.MAX_VECTORS ** (1 / int(n)) + 1e-9)))
k = c2.number_input(
    "Values per pixel |P|",
    2,
    max_k,
    value=widgets.kept("theory-k", 2, bounds=(2, max_k)),
    key="theory-k",
    help=f"|P|^n vectors, at most {theory.MAX_VECTORS} for the exact analysis.",
)
values = tuple(range(int(k)))
Q_KINDS = {
    "dropout-never-full": "dropout, never fully observed (q(1) = 0)",
    "dropout": "independent dropout",
    "one-observed": "exactly one pixel observed",
    "one-missing": "exactly one pixel missing",
}
q_kind = widgets.pick(c3.selectbox, "Mask distribution q", Q_KINDS, key="theory-q")
rate = st.slider(
    "Missing rate (dropout)",
    0.05,
    0.95,
    step=0.05,
    value=widgets.kept("theory-rate", 0.5), key="theory-rate",
    disabled=not q_kind.startswith("dropout"),
)
d1, d2, d3 = st.columns(3)
p_kind = d1.selectbox("True data distribution p_x", ["sparse", "uniform"],
                      index=widgets.kept_index("theory-p", "sparse", ["sparse", "uniform"]), key="theory-p")
support = d2.number_input(
    "Support size (sparse)",
    1,
    int(k) ** int(n),
    value=widgets.kept("theory-support", min(2, int(k) ** int(n)), bounds=(1, int(k) ** int(n))),
    key="theory-support",
    disabled=p_kind != "sparse",
)
seed = d3.number_input("Seed (sparse)", 0, 10_000, value=widgets.kept("theory-seed", 0), key="theory-seed",
                       disabled=p_kind != "sparse")

try:
    problem = theory.DiscreteProblem(int(n), values)
    q = theory.mask_distribution(problem, q_kind, float(rate))
    check = theory.check_theorem1(problem, q)
    p_x = theory.data_distribution(problem, p_kind, int(support), int(seed))
except MisGANError as err:
    st.error(f"Cannot build this problem: {err}")
    st.stop()

labels = [problem.vector_label(v) for v in problem.vectors]
st.subheader("The mask distribution q")
st.dataframe(
    [
        {"mask (o = observed, _ = missing)": problem.mask_label(m), "q(m)": round(float(w), 4)}
        for m, w in zip(problem.masks, q, strict=True)
    ],
    hide_index=True,
)

st.subheader("Theorem 1: one null space for every τ")
m1, m2, m3 = st.columns(3)
m1.metric("Data vectors |I|", len(labels))
m2.metric("Rank of T (every τ)", ", ".join(str(r) for r in check.ranks.values()))
m3.metric("Null space dimension", check.nullity)
if check.equal:
    st.success(
        f"The null spaces of T for τ in {list(values)} are identical (equal orthogonal projectors), as "
        f"theorem 1 says."
    )
else:
    st.error("The null spaces differ, which would contradict theorem 1: please report this.")
if check.full_rank:
    st.info(
        "q gives the fully observed mask positive probability, so T is invertible: every p_x is recoverable."
    )

tabs = st.tabs([f"T for τ = {tau}" for tau in values] + ["Null space basis"])
for tab, tau in zip(tabs, values, strict=False):
    with tab:
        fig = go.Figure(
            go.Heatmap(z=check.matrices[tau], x=labels, y=labels, colorscale="Blues", zmin=0, zmax=1)
        )
        fig.update_layout(
            height=360,
            margin=dict(l=10, r=10, t=30, b=10),
            xaxis=dict(type="category", title="s (data vector)"),
            yaxis=dict(type="category", title="t (masked vector)", autorange="reversed"),
        )
        st.plotly_chart(fig, key=f"theory-T-{tau}")
with tabs[-1]:
    basis = check.null_spaces[values[0]]
    if basis.shape[1] == 0:
        st.caption("The null space is {0}.")
    else:
        st.dataframe(
            [
                {"vector": lab, **{f"v{j + 1}": round(float(basis[i, j]), 4) for j in range(basis.shape[1])}}
                for i, lab in enumerate(labels)
            ],
            hide_index=True,
        )

st.subheader("Is p_x identifiable?")
result = None
with widgets.guard("The identifiability check failed"):
    result = theory.identifiability(check.matrices[values[0]], p_x)
if result is not None:
    if result.unique:
        st.success(
            "Yes: p_x is the only non-negative solution of T p = T p_x. MisGAN can in principle recover it "
            "(with any τ, by corollary 1)."
        )
    else:
        st.warning(
            "No: another distribution produces exactly the same masked data, so no method can tell them "
            "apart from incomplete data. Sparser p_x or lower missing rates help."
        )
    rows = []
    for i, lab in enumerate(labels):
        row = {
            "vector": lab,
            "p_x": round(float(p_x[i]), 4),
            "min p(s)": round(float(result.ranges[i, 0]), 4),
            "max p(s)": round(float(result.ranges[i, 1]), 4),
        }
        if result.alternative is not None:
            row["another solution"] = round(float(result.alternative[i]), 4)
        rows.append(row)
    st.dataframe(rows, hide_index=True)

st.divider()
st.subheader("When the mask depends on the value (MNAR)")
st.markdown(
    "Above, the mask is drawn without looking at the data (MCAR). Suppose instead that bright values are "
    "hidden more often: each pixel is observed with probability 0.9 at the smallest value, falling to 0.3 at "
    "the largest (**self-masking**). The data then show only the observed-data law, P(m, x<sub>obs</sub>). "
    "Is p<sub>x</sub> determined by it? That depends on which mechanisms the model allows: any q(m | x) "
    "(**unrestricted**), or only self-masking ones, as `--mask-model self-masking` does.",
    unsafe_allow_html=True,
)
m1, m2 = st.columns(2)
mnar_values = m1.selectbox("Values per pixel", [2, 3], index=widgets.kept_index("theory-mnar-values", 2, [2, 3]),
                           key="theory-mnar-values")
MNAR_PIXELS = ["dependent (tend to share a value)", "independent"]
mnar_px = m2.selectbox("Pixels are", MNAR_PIXELS,
    index=widgets.kept_index("theory-mnar-px", MNAR_PIXELS[0], MNAR_PIXELS),
                       key="theory-mnar-px")
mnar_problem = theory.DiscreteProblem(2, tuple(range(int(mnar_values))))
mnar_truth = (theory.dependent_pixels(mnar_problem) if mnar_px.startswith("dependent")
              else theory.independent_pixels(mnar_problem))
mnar_mechanism = theory.brightness_masking(mnar_problem)
checks = {}
with widgets.guard("The MNAR identifiability check failed"):
    checks = {kind: theory.mnar_check(mnar_problem, mnar_truth, mnar_mechanism, kind)
              for kind in theory.MNAR_MECHANISMS}
if checks:
    st.dataframe([{"mechanisms allowed": kind, "unknowns": c.parameters, "observed numbers": c.observed,
                   "Jacobian rank": c.rank, "p_x identified": "yes" if c.identified else "no",
                   "largest change of p_x with the same data": round(c.spread, 4)}
                  for kind, c in checks.items()], hide_index=True)
    mnar_labels = [mnar_problem.vector_label(v) for v in mnar_problem.vectors]
    rows = []
    for i, lab in enumerate(mnar_labels):
        row = {"vector": lab, "true p_x": round(float(mnar_truth[i]), 4)}
        for kind, c in checks.items():
            if c.alternative is not None:
                row[f"another p_x ({kind})"] = round(float(c.alternative[i]), 4)
        rows.append(row)
    st.dataframe(rows, hide_index=True)
    st.caption(
        "Unrestricted MNAR is never identifiable: other data laws, with mechanisms to match, produce exactly "
        "the same incomplete data (linear programs over all joint laws; Mohan and Pearl 2021). Self-masking is "
        "identified when the pixels depend on each other, each acting as a shadow variable for the other "
        "(Miao and Tchetgen Tchetgen 2016): the Jacobian has full rank and every exact fit from 16 random "
        "starts recovers p_x. With independent pixels it is not."
    )
