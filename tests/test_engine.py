"""The CPU engine: bf16 autocast, torch.compile with its fall-backs, distinct-image evaluation.

These are the tests about compiling, so they turn compilation on (the rest of the suite runs with
LQLIB_COMPILE=0)."""
import pytest
import torch
from torch import nn

from lqlib.engine import CompileProbe, Compiled, compiled
from lqlib.models import build_backbone
from lqlib.precision import autocast_dtype, cpu_has_bf16


def test_compiled_matches_eager_and_keeps_plain_state_dict_keys():
    torch.manual_seed(0)
    m = build_backbone("ir_cbam_tiny").eval()
    c = compiled(m)
    x = torch.randn(4, 3, 112, 112)
    with torch.no_grad():
        assert torch.allclose(c(x), m(x), atol=1e-4)
    from lqlib.models.interface import unwrap

    assert list(unwrap(c).state_dict()) == list(m.state_dict())
    assert c.embedding_size == m.embedding_size and c.block_stage == m.block_stage  # the contract passes through


def test_compile_failure_falls_back_to_eager(capsys):
    class Breaks(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return x * self.w

    c = Compiled(Breaks())

    class LoweringError(RuntimeError):  # what inductor raises when it cannot compile
        __module__ = "torch._inductor.exc"

    def boom(*a, **k):
        raise LoweringError("no C++ compiler")

    object.__setattr__(c, "_fn", boom)
    out = c(torch.ones(2, 3))
    assert torch.equal(out, torch.ones(2, 3)) and c.failed
    assert "running eager" in capsys.readouterr().err
    assert compiled(nn.Identity()) .__class__ is nn.Identity  # nothing to compile: unchanged


def test_probe_keeps_the_faster_engine():
    mods = [Compiled(nn.Linear(2, 2))]
    slow_compiled = CompileProbe(mods, warmup=1, probe=3)
    for t in [9.0, 2.0, 2.1, 1.9, 1.0, 1.1, 0.9]:
        slow_compiled.observe(t)
    assert slow_compiled.decision == "eager (compiled step was slower)" and mods[0].eager
    fast = CompileProbe(mods, warmup=1, probe=3)
    for t in [9.0, 1.0, 1.1, 0.9, 2.0, 2.1, 1.9]:
        fast.observe(t)
    assert fast.decision == "compiled" and not mods[0].eager
    assert fast.report()["compile_s"] == pytest.approx(8.0) and fast.report()["step_ms"]["eager"] == 2000.0


def test_bf16_is_the_cpu_default_only_where_the_cpu_has_it():
    assert autocast_dtype("cpu", "off") is None and autocast_dtype("cpu", "bf16") is torch.bfloat16
    assert autocast_dtype("cpu") == (torch.bfloat16 if cpu_has_bf16() else None)


def test_the_bf16_decision_can_be_overridden(monkeypatch):
    """``LQLIB_CPU_BF16`` makes one machine decide as another (timings of an AVX2-only CPU on a bf16 one)."""
    for env, want in (("0", None), ("1", torch.bfloat16)):
        monkeypatch.setenv("LQLIB_CPU_BF16", env)
        assert autocast_dtype("cpu") is want and autocast_dtype("cuda") is torch.bfloat16
    monkeypatch.setenv("LQLIB_CPU_BF16", "yes")
    with pytest.raises(ValueError, match="LQLIB_CPU_BF16"):
        cpu_has_bf16()


def test_bf16_and_fp32_training_reach_the_same_accuracy(tmp_path):
    """The same small task trained with bf16 autocast and in fp32: verification accuracy within noise."""
    from lqlib.data import PairSet
    from lqlib.data.synthetic import SyntheticFaces
    from lqlib.evaluation import evaluate
    from lqlib.train import TrainConfig, train_teacher
    from lqlib.checkpoint import load_backbone

    base = dict(data="synthetic", synthetic={"num_classes": 8, "images_per_class": 8}, backbone="ir_cbam_tiny",
                epochs=6, batch_size=16, lr=0.05, progress=False, head_kw={"s": 16.0, "m": 0.2}, compile=False)
    images, issame = SyntheticFaces(num_classes=8, images_per_class=8, seed=0).pairs(120)
    pairs = PairSet(images, issame, torch.arange(120) * 4 // 120, "synthetic")
    acc = {}
    for amp in ("bf16", "off"):
        train_teacher(TrainConfig(name=amp, out_dir=str(tmp_path / amp), amp=amp, **base))
        df = evaluate(load_backbone(tmp_path / amp), pairs, scales=(1,), compile=False)
        acc[amp] = float(df.acc_mean.iloc[0])
    assert acc["off"] > 75, acc  # the task is learnt at all
    assert abs(acc["bf16"] - acc["off"]) < 8.0, acc


def test_evaluation_embeds_each_distinct_image_once_per_scale():
    from lqlib.evaluation import evaluate

    class Count(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 4)
            self.seen = 0

        def forward(self, x):
            self.seen += x.shape[0]
            return self.fc(x.mean((2, 3)))

    g = torch.Generator().manual_seed(0)
    distinct = torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8, generator=g)
    idx = torch.tensor([0, 1, 0, 2, 1, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5])  # 16 slots, 10 distinct images
    issame = torch.tensor([True, False] * 4)
    m = Count()
    evaluate(m, (distinct[idx], issame, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])), scales=(1, 2), eval_mode="both",
             compile=False)
    assert m.seen == 2 * 2 * 10  # 2 scales × (originals + flips) × 10 distinct images, not 16 slots


def test_compiled_evaluation_matches_eager():
    from lqlib.evaluation import embed

    torch.manual_seed(0)
    m = build_backbone("ir_cbam_tiny").eval()
    x = torch.randint(0, 256, (10, 3, 112, 112), dtype=torch.uint8)
    e1, f1 = embed(m, x, batch_size=4, compile=False)
    e2, f2 = embed(m, x, batch_size=4, compile=True)  # padded last batch: one graph
    cos = torch.nn.functional.cosine_similarity
    assert cos(e1, e2).min() > 0.999 and cos(f1, f2).min() > 0.999
