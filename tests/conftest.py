import os

import pytest
import torch

# Keep each xdist worker to one thread: the suite runs 2 workers on 2 cores.
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
