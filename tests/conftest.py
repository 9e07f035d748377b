import os

import pytest
import torch

# Keep each xdist worker to one thread: the suite runs 2 workers on 2 cores.
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")
# Token caches of streamed text go to a directory of this test session, not the user's ~/.cache.
if "ARCHLAB_CACHE" not in os.environ:
    import tempfile

    os.environ["ARCHLAB_CACHE"] = tempfile.mkdtemp(prefix="archlab-test-cache-")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
