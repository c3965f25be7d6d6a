import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest
import torch


# One intra-op thread: on 2 shared cores this is several times faster than torch's default
# (oversubscription), and it keeps CPU results bit-reproducible.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
