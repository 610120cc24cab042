"""The MisGAN Workbench web app (Streamlit): navigation, session glue and shared widgets.

Start it with `streamlit run workbench/Home.py`. Pages live in the top-level `pages/` folder and call the
engine (`misgan_core`) only through its public API and the helpers here; no tensor math happens in pages.
"""
