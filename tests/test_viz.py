"""lqlib.viz and lqlib.plotting: attention maps by stage, overlays, block similarity, saving, plots."""
from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lqlib import plotting, viz  # noqa: E402
from lqlib.degrade import degrade  # noqa: E402
from lqlib.models import build_backbone, interface  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_spatial_maps_by_stage_shapes(tiny, faces):
    tiny.train()
    maps = viz.spatial_maps_by_stage(tiny, faces)
    assert tiny.training, "the model's training flag is restored"
    assert maps.shape == (4, 2, 112, 112) and maps.dtype == np.float32
    assert np.all((maps >= 0) & (maps <= 1))  # post-sigmoid CBAM gates
    assert interface.last_block_per_stage(tiny.block_stage) == [0, 1, 2, 3]
    assert interface.last_block_per_stage((0, 0, 1, 1, 1, 2, 3, 3)) == [1, 4, 5, 7]
    assert viz.spatial_maps_by_stage(tiny, faces[0], size=(28, 28)).shape == (4, 1, 28, 28)


def test_spatial_maps_need_spatial_attention(faces):
    with pytest.raises(ValueError, match="spatial"):
        viz.spatial_maps_by_stage(build_backbone("ir_se_tiny"), faces)


def test_overlay_range_and_shape(faces):
    heat = np.random.default_rng(0).normal(size=(7, 7)) * 5  # any range, any size
    out = viz.overlay(faces[0], heat, alpha=0.4)
    assert out.shape == (112, 112, 3) and out.dtype.kind == "f"
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert viz.overlay(faces[0].permute(1, 2, 0).numpy(), np.zeros((112, 112))).max() <= 1.0  # HWC, flat map


def test_block_similarity_identical_is_one(tiny, faces):
    for kind in ("spatial", "channel"):
        sim = viz.block_similarity(tiny, tiny, faces, faces, kind=kind)
        assert sim.shape == (tiny.num_blocks,)
        np.testing.assert_allclose(sim, 1.0, atol=1e-5)
    lq = degrade(faces, 8)
    assert viz.block_similarity(tiny, tiny, faces, lq).mean() < 1.0 - 1e-4


def test_figures_build(tiny, faces):
    lq = degrade(faces, 4)
    fig = viz.attention_figure(tiny, tiny, faces, lq)
    ax, = fig.axes  # one mosaic image: fast to redraw
    heads = [t.get_text() for t in ax.get_xticklabels()]
    assert heads[:4] == ["HR", "LR", "T stage 1", "S stage 1"] and len(heads) == 2 + 2 * 4
    assert ax.get_images()[0].get_array().shape == (2 * 112 + 4, 10 * 112 + 9 * 4, 3)
    ax, = viz.degradation_grid(faces, scales=(1, 2, 4, 8)).axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["HR (×1)", "×2", "×4", "×8"]
    assert len(viz.face_grid(faces, titles=["a", "b"], ncols=8).axes) == 2


def test_attention_figure_aligns_stages_of_different_backbones(tiny, faces):
    # IResNet blocks live in stages 0-3, MobileFaceNet's in 1-3 (same resolutions): only shared stages are drawn
    torch.manual_seed(0)
    mbf = build_backbone("mobilefacenet_esca", embedding_size=32).eval()
    assert interface.model_stages(mbf) == [1, 2, 3] and interface.common_stages(tiny, mbf) == ([1, 2, 3], [1, 2, 3], [0, 1, 2])
    ax, = viz.attention_figure(tiny, mbf, faces[:1], degrade(faces[:1], 4)).axes
    assert [t.get_text() for t in ax.get_xticklabels()][2:] == ["T stage 2", "S stage 2", "T stage 3", "S stage 3",
                                                                "T stage 4", "S stage 4"]
    # 4 IResNet blocks vs 15 MobileFaceNet blocks: paired by stage as in attention KD, one value per student block
    assert viz.block_similarity(tiny, mbf, faces[:1], faces[:1]).shape == (mbf.num_blocks,)


def test_save_figure_pdf_png_atomic_type42(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [3, 1, 2], label="accuracy ×8")
    ax.set_title("Fonts must be TrueType")
    ax.legend()
    with matplotlib.rc_context({"pdf.fonttype": 3}):  # even when the global setting says Type 3
        paths = plotting.save_figure(fig, "fig_test", directory=tmp_path)
    assert [p.name for p in paths] == ["fig_test.pdf", "fig_test.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig_test.pdf", "fig_test.png"]  # no temp files left
    pdf = (tmp_path / "fig_test.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and b"/Type3" not in pdf
    assert b"/CIDFontType2" in pdf or b"/TrueType" in pdf  # Type 42: TrueType outlines (CID-keyed here)
    assert (tmp_path / "fig_test.png").read_bytes().startswith(b"\x89PNG")


def test_save_figure_again_writes_the_same_bytes(tmp_path, monkeypatch):
    """A figure drawn again from the same numbers is the same file: its PDF carries no /CreationDate, so a re-run
    that changes no number leaves a committed figure untouched. Metadata the caller passes is still written."""
    fig, ax = plt.subplots()
    ax.plot([1, 2, 4, 8], [99.0, 97.5, 90.1, 70.2])
    saved = []
    for clock, sub in (("1000000000", "a"), ("2000000000", "b")):  # two different times of day
        monkeypatch.setenv("SOURCE_DATE_EPOCH", clock)
        saved.append([p.read_bytes() for p in plotting.save_figure(fig, "again", tmp_path / sub)])
    assert saved[0] == saved[1]
    assert b"/CreationDate" not in saved[0][0]
    titled = plotting.save_figure(fig, "titled", tmp_path, formats=("pdf",), metadata={"Title": "accuracy x8"})
    assert b"accuracy x8" in titled[0].read_bytes()


def test_save_figure_failure_leaves_nothing(tmp_path):
    fig, _ = plt.subplots()
    with pytest.raises(ValueError, match="unsupported"):
        plotting.save_figure(fig, "x", directory=tmp_path, formats=("pdf", "nope"))
    assert list(tmp_path.iterdir()) == []


def _results() -> pd.DataFrame:
    rows = []
    for m, base in (("baseline", 0.97), ("hr-lr", 0.98)):
        for seed in (0, 1, 2):
            for s, drop in ((1, 0.0), (2, 0.01), (4, 0.05), (8, 0.15)):
                rows.append({"model": m, "seed": seed, "scale": s, "interpolation": "bicubic",
                             "acc": base - drop * (1.2 if m == "baseline" else 0.8) + 0.002 * seed})
    return pd.DataFrame(rows)


def test_accuracy_vs_scale_tiny_frame():
    plotting.set_style()
    assert matplotlib.rcParams["pdf.fonttype"] == 42
    ax = plotting.accuracy_vs_scale(_results())
    assert [t.get_text() for t in ax.get_xticklabels()] == ["×1", "×2", "×4", "×8"]
    assert ax.get_ylabel() == "accuracy (%)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["baseline", "hr-lr"]
    lines = [ln for ln in ax.get_lines() if ln.get_marker() == "o" and len(ln.get_xdata()) == 4]
    assert len(lines) == 2
    np.testing.assert_allclose(lines[0].get_xdata(), [0, 1, 2, 3])  # log2 scale
    assert max(max(ln.get_ydata()) for ln in lines) > 90  # fractions shown as percent


def test_accuracy_vs_scale_pre_aggregated():
    # lqlib.evaluation.aggregate_seeds layout: acc_mean, its spread over seeds, acc_std over folds
    agg = _results().groupby(["model", "scale"], as_index=False)["acc"].agg(acc_mean="mean", acc_mean_seeds_std="std")
    agg["acc_std"] = 0.05
    ax = plotting.accuracy_vs_scale(agg)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["×1", "×2", "×4", "×8"]
    bars = [c for c in ax.containers if c.has_yerr]
    assert len(bars) == 2  # one set of error bars per method, from the seeds' spread (not acc_std)
    seg = bars[0].lines[2][0].get_segments()[0]
    first = agg[agg["model"] == "baseline"].iloc[0]
    assert seg[1][1] - seg[0][1] == pytest.approx(2 * 100 * first["acc_mean_seeds_std"])


def test_method_comparison_and_curves(tmp_path):
    ax = plotting.method_comparison(_results(), scale=8)
    assert len(ax.patches) == 2
    lo, hi = ax.get_ylim()
    assert 0 <= lo < 83 and hi <= 100
    many = pd.concat([_results().assign(model=f"method number {i}") for i in range(6)], ignore_index=True)
    fig = plotting.method_comparison(many, scale=8).figure
    fig.canvas.draw()
    labels = [t.get_window_extent() for t in fig.axes[0].get_xticklabels()]
    bars = [p.get_window_extent() for p in fig.axes[0].patches]
    assert len(labels) == len(bars) == 6
    assert all(lab.x1 <= bar.x1 for lab, bar in zip(labels, bars))  # each name ends under its own bar
    metrics = pd.DataFrame({"epoch": [0, 0, 1, 1], "step": [1, 2, 3, 4], "loss": [3.0, 2.5, 2.0, 1.8],
                            "loss_arcface": [2.0, 1.8, 1.5, 1.4], "loss_attention": [1.0, 0.7, 0.5, 0.4],
                            "lr": [0.1, 0.1, 0.01, 0.01], "val_acc": [np.nan, 0.6, np.nan, 0.7]})
    path = tmp_path / "metrics.csv"
    metrics.to_csv(path, index=False)
    fig = plotting.training_curves(path)
    assert len(fig.axes) == 3 and fig.axes[1].get_ylabel() == "validation accuracy (%)"
    fig = plotting.training_curves(metrics.rename(columns={"val_acc": "val_acc_x1"}))
    assert fig.axes[1].get_ylabel() == "validation accuracy ×1 (%)"
    fig = plotting.training_curves(metrics.assign(train_acc=0.5))
    assert fig.axes[1].get_ylabel() == "accuracy (%)"          # two columns: the legend names them
    # the logged terms are unweighted: with the run's weights they are drawn as they enter the total
    kd = pd.DataFrame({"epoch": [1, 2, 3], "loss": [69.0, 59.5, 55.0], "loss_ce": [25.0, 20.0, 17.5],
                       "loss_angular": [0.88, 0.79, 0.75]})
    ax = plotting.training_curves(kd, weights={"angular": 50.0}).axes[0]
    drawn = {ln.get_label(): ln.get_ydata() for ln in ax.lines}
    assert set(drawn) == {"total", "ce", "50 × angular"}
    np.testing.assert_allclose(drawn["ce"] + drawn["50 × angular"], drawn["total"])
    assert all(float(t).is_integer() for t in ax.get_xticks())     # epochs 1, 2, 3: no tick at 1.5
    plain = plotting.training_curves(kd).axes[0]
    assert [ln.get_label() for ln in plain.lines] == ["total", "ce", "angular"]
    plain.figure.canvas.draw()       # the legend sits beside the loss panel, never over its curves
    assert plain.get_legend().get_window_extent().x0 >= plain.get_window_extent().x1
    with pytest.raises(ValueError, match="weights name terms the metrics do not log: \\['attention'\\]"):
        plotting.training_curves(kd, weights={"attention": 5.0})
    ax = plotting.attention_similarity_curve({"hr-lr": [0.9, 0.8, 0.7, 0.6], "none": [0.8, 0.6, 0.5, 0.3]},
                                             block_stage=(0, 1, 2, 3))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["hr-lr", "none"]


def test_accuracy_vs_scale_long_names_put_the_legend_outside(tmp_path):
    df = _results().replace({"model": {"hr-lr": "angular_emb+relational ← faceapi-resnet"}})
    ax = plotting.accuracy_vs_scale(df)
    fig = ax.figure
    assert fig.get_size_inches()[0] > 4.0  # widened for the legend
    plotting.save_figure(fig, "long", directory=tmp_path, formats=("png",))
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # right of the axes, not over the lines
    short = plotting.accuracy_vs_scale(_results())
    assert tuple(short.figure.get_size_inches()) == (4.0, 3.0)


def test_error_bar_note_says_what_the_bars_are():
    seeds = pd.DataFrame({"model": ["a", "a", "b", "b", "b"], "scale": 8.0, "acc": [70.0, 71, 60, 61, 62]})
    assert plotting.error_bar_note(seeds, "acc", ["model"]) == "error bars: sd over 2–3 seeds"
    one = pd.DataFrame({"model": ["a", "b"], "scale": 8.0, "acc_mean": [70.0, 60], "acc_std": [1.0, 2.0]})
    assert plotting.error_bar_note(one, "acc_mean", ["model"]) == "error bars: k-fold sd of one seed (no seed spread)"
    ax = plotting.method_comparison(one, scale=8)
    assert "k-fold sd of one seed" in " ".join(t.get_text() for t in ax.texts)


def test_method_comparison_shows_each_bars_seed_count_and_hatches_a_single_seed():
    seeds = pd.DataFrame({"model": ["a", "a", "a", "b", "b", "c"], "scale": 8.0,
                          "acc": [70.0, 71, 72, 60, 62, 75]})
    ax = plotting.method_comparison(seeds, scale=8)
    texts = [t.get_text() for t in ax.texts]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a (n=3)", "b (n=2)", "c (n=1)"]
    assert [bool(p.get_hatch()) for p in ax.patches] == [False, False, True]
    assert "error bars: sd over 1–3 seeds (1 seed: no bar, hatched)" in texts
    # the caption of a line plot, where nothing is hatched, keeps its wording
    assert plotting.error_bar_note(seeds, "acc", ["model"]) == "error bars: sd over 1–3 seeds (1 seed: none)"


def test_cmc_curves_rank_ticks_are_whole_numbers():
    """A CMC axis counts ranks: no tick at rank 2.5 (20 ranks used to get ticks 2.5, 5.0, …)."""
    curves = {"a": np.linspace(10, 60, 20), "b": np.vstack([np.linspace(5, 40, 20), np.linspace(7, 44, 20)])}
    ax = plotting.cmc_curves(curves)
    ax.figure.canvas.draw()
    ticks = [t for t in ax.get_xticks() if 1 <= t <= 20]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert np.allclose(lines["b"].get_ydata(), np.linspace(6, 42, 20))  # the mean over seeds is drawn
    plt.close(ax.figure)
