import os

os.environ.setdefault("MPLBACKEND", "Agg")
# torch.compile is exercised by the tests about compiling (test_engine.py), not by every training test
os.environ.setdefault("LQLIB_COMPILE", "0")
# caches (decoded packs, teacher embeddings, converted teachers) of the tests stay out of the repo's cache/
if "LQLIB_CACHE" not in os.environ:
    import tempfile

    os.environ["LQLIB_CACHE"] = tempfile.mkdtemp(prefix="lqlib-test-cache-")

import pytest
import torch


# One intra-op thread: on 2 shared cores this is several times faster than torch's default
# (oversubscription), and it keeps CPU results bit-reproducible.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


# Shared by the figure/CAM tests: two synthetic 112×112 faces and a tiny CBAM backbone in eval mode.
@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    from lqlib.data.synthetic import SyntheticFaces

    ds = SyntheticFaces(num_classes=2, images_per_class=1, size=112, seed=0)
    return torch.stack([ds[i][0] for i in range(2)])


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    from lqlib.models import build_backbone

    torch.manual_seed(0)
    return build_backbone("ir_cbam_tiny").eval()
