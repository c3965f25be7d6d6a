import os

os.environ.setdefault("MPLBACKEND", "Agg")
# torch.compile is exercised by the tests about compiling (test_engine.py), not by every training test
os.environ.setdefault("LQLIB_COMPILE", "0")
# caches (decoded packs, teacher embeddings, converted teachers) of the tests stay out of the repo's cache/
if "LQLIB_CACHE" not in os.environ:
    import tempfile

    _run = os.environ.get("PYTEST_XDIST_TESTRUNUID")  # pytest -n: the workers of one run share one cache
    if _run:
        os.environ["LQLIB_CACHE"] = os.path.join(tempfile.gettempdir(), f"lqlib-test-cache-{_run}")
        os.makedirs(os.environ["LQLIB_CACHE"], exist_ok=True)
    else:
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



# A tiny trained study (synthetic faces, tiny backbone, 2 epochs) for the study-level tests: the teacher and the
# given (method, seed) students under a temporary runs/ folder, kept for the module.
TINY_STUDY_OVERRIDES = dict(data="synthetic", synthetic={"num_classes": 4, "images_per_class": 4}, max_images=None,
                            epochs=2, batch_size=8, lr=0.05, progress=False, head_kw={"s": 16.0, "m": 0.2},
                            device="cpu")


@pytest.fixture(scope="module")
def make_tiny_study(tmp_path_factory):
    """``make_tiny_study(name, students=((method, seed), ...), **overrides)`` → a trained ``Study``; ``runs/``
    points to a temporary folder until the module ends."""
    from lqlib import paths
    from lqlib import study as S
    from lqlib.train import train_student, train_teacher

    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("runs")
    mp.setattr(paths, "runs_dir", lambda: root)

    def make(name: str, students=(("none", 0), ("none", 1), ("logit", 0), ("logit", 1)), **overrides):
        ovr = {**TINY_STUDY_OVERRIDES, **overrides}
        st = S.Study(name)
        train_teacher(S.training_config(st, "teacher", recipe="smoke", overrides=ovr))
        for method, seed in students:
            train_student(S.training_config(st, "student", recipe="smoke", method=method, seed=seed, overrides=ovr))
        return st

    yield make
    mp.undo()


@pytest.fixture
def same_batch_losses():
    """``same_batch_losses(live, cached, images, labels, idx, seed=7)`` → the loss parts of two distillers (e.g. live
    teacher vs cached teacher outputs) on the same batch with the same flips / replacements / degradations (one
    generator seed), without gradients. A fixture, so that no test imports ``conftest`` by name (there are two)."""
    from lqlib.losses import Progress

    def losses(live, cached, images, labels, idx, seed: int = 7) -> tuple[dict, dict]:
        out = []
        for d in (live, cached):
            gen = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                out.append(d(images[idx], labels[idx], gen, Progress(), index=idx)[1])
        return out[0], out[1]
    return losses
