"""Entry point: `streamlit run workbench/Home.py`. Registers the pages and runs the one asked for.

`streamlit run` puts only this folder on sys.path; the repository root goes first so that `misgan_core`
and `workbench` import from this checkout. Page paths are relative to this file.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from workbench import state  # noqa: E402

st.set_page_config(page_title="MisGAN Workbench", page_icon="🧩", layout="wide")
refusal = state.public_address_refusal()
if refusal:
    st.error(refusal)
    st.stop()
state.init_process()
# Widget values that must survive page changes are kept by workbench.widgets.kept, widget by widget.

PAGES = [
    st.Page("../pages/home.py", title="Home", icon=":material/home:", url_path="home", default=True),
    st.Page("../pages/train.py", title="Train", icon=":material/model_training:", url_path="train"),
    st.Page("../pages/inpaint.py", title="Inpaint", icon=":material/brush:", url_path="inpaint"),
    st.Page("../pages/compare.py", title="Compare", icon=":material/compare:", url_path="compare"),
    st.Page("../pages/runs.py", title="Runs", icon=":material/folder_open:", url_path="runs"),
    st.Page("../pages/theory.py", title="Theory", icon=":material/functions:", url_path="theory"),
]

page = st.navigation(PAGES)
page.run()
