import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Tests share 2 cores with each other's subprocesses: one torch thread each keeps timings sane.
torch.set_num_threads(1)
os.environ.setdefault("MISGAN_TEST", "1")
# AppTest runs pages in this process: let it see the errors the app hides from visitors (the browser test's
# server is a subprocess and keeps the shipped setting, "none").
os.environ.setdefault("STREAMLIT_CLIENT_SHOW_ERROR_DETAILS", "full")


@pytest.fixture(scope="session")
def mnist5k():
    from misgan_core import load_complete

    return load_complete("mnist-5k")
