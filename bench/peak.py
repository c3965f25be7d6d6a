"""The measured peak of this machine: what the fractions in bench/ and the README are taken against.

    python bench/peak.py                     # the threads the KD step uses (torch's default)
    python bench/peak.py --threads 2 --backbones ir_cbam_18 ir_cbam_tiny

The nominal estimate (:func:`lqlib.precision.machine_peak_gflops`: cores × the clock /proc/cpuinfo
reports × FLOP/cycle from the CPU flags) assumes the nominal clock; these cores run faster, so a
fraction of it overstates how close a step is to the limit. This module measures instead, on the
threads the step uses, best of ``--repeats`` runs of each kernel:

* GEMM, bf16 and fp32, square and the head's shape (batch × 512 → classes);
* every distinct convolution of the backbones (collected from one forward pass: channels, kernel,
  stride, input size), channels_last, forward at the step's batch, bf16 (autocast) and fp32; and
  the same convolutions forward + backward (input and weight gradients, what training runs),
  FLOP-weighted over the network: the rate the backbone's own convolutions can reach here (CBAM's
  gate convolutions — the channel MLP on 1×1 maps, the 2→1 spatial conv, < 0.1 % of the FLOPs,
  latency-bound — are measured and listed but left out of that rate; the step profile counts them).

``peak`` per dtype is the best rate of any kernel measured (GEMM or convolution); ``conv_fwd_bwd``
is the network's FLOP-weighted convolution rate in training. Writes ``bench/results/peak.json``
(and ``peak_<stamp>.json``) and a row to ``bench/results/peak.md``; :func:`measured_peak` reads it
back for the other benches.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lqlib.io import write_json, write_text  # noqa: E402
from lqlib.models import build_backbone  # noqa: E402
from lqlib.precision import cpu_flags, machine_peak_gflops  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def best_rate(fn, flop: float, repeats: int, min_s: float = 0.05) -> float:
    """Best GFLOP/s of ``fn`` over ``repeats`` timed runs, each repeating ``fn`` for at least ``min_s``."""
    fn()  # warm-up: oneDNN primitive creation, caches
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-6)
    inner = max(1, int(min_s / one))
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        best = max(best, flop * inner / (time.perf_counter() - t0) / 1e9)
    return best


def gemm_rate(m: int, k: int, n: int, dtype: torch.dtype, repeats: int) -> float:
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    return best_rate(lambda: torch.mm(a, b), 2.0 * m * k * n, repeats)


def conv_shapes(backbone: str) -> list[dict]:
    """Distinct convolutions of ``backbone`` on a 112×112 input with how often each occurs and its FLOPs
    per image (forward, 2·MAC)."""
    model = build_backbone(backbone).eval()
    seen: dict[tuple, dict] = {}

    def hook(mod: nn.Conv2d, inp, out):
        x = inp[0]
        key = (mod.in_channels, mod.out_channels, mod.kernel_size[0], mod.stride[0], mod.padding[0], mod.groups,
               x.shape[-2], x.shape[-1])
        if key not in seen:
            macs = out.shape[1] * out.shape[2] * out.shape[3] * (mod.in_channels // mod.groups) * \
                mod.kernel_size[0] * mod.kernel_size[1]
            seen[key] = {"cin": key[0], "cout": key[1], "k": key[2], "stride": key[3], "pad": key[4],
                         "groups": key[5], "hw": key[6], "count": 0, "gflop_per_image": 2 * macs / 1e9,
                         # CBAM's gates: the channel MLP (1×1 on a 1×1 map) and the 2→1 spatial conv
                         "gate": x.shape[-1] == 1 or mod.in_channels == 2}
        seen[key]["count"] += 1

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, 112, 112))
    for h in hooks:
        h.remove()
    return list(seen.values())


def conv_rates(shape: dict, batch: int, dtype: torch.dtype, repeats: int) -> tuple[float, float]:
    """(forward GFLOP/s, forward+backward GFLOP/s) of one convolution, channels_last, ``dtype`` via
    autocast for bf16 (as the step runs it)."""
    conv = nn.Conv2d(shape["cin"], shape["cout"], shape["k"], shape["stride"], shape["pad"], groups=shape["groups"],
                     bias=False).to(memory_format=torch.channels_last)
    x = torch.randn(batch, shape["cin"], shape["hw"], shape["hw"]).contiguous(memory_format=torch.channels_last)
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == torch.bfloat16 else torch.autocast("cpu", enabled=False)
    flop = shape["gflop_per_image"] * 1e9 * batch

    def fwd():
        with torch.no_grad(), amp:
            conv(x)

    xg = x.clone().requires_grad_(True)

    def fwd_bwd():
        with amp:
            y = conv(xg)
        y.backward(torch.ones_like(y))
        conv.weight.grad = None
        xg.grad = None

    # the first convolution of a network has no input gradient: count 2× forward for it, 3× otherwise
    bwd_factor = 2.0 if shape["cin"] == 3 else 3.0
    if shape["cin"] == 3:
        xg.requires_grad_(False)
    return best_rate(fwd, flop, repeats), best_rate(fwd_bwd, bwd_factor * flop, repeats)


def conv_summary(rows: list[dict], batch: int) -> dict:
    """FLOP-weighted rates of the backbone's convolutions (the CBAM gates' tiny latency-bound convs,
    < 0.1 % of the FLOPs, are left to the step profile): total FLOPs / total time at each shape's rate."""
    summary = {"batch": batch, "shapes": rows}
    conv = [r for r in rows if not r["gate"]]
    flop = sum(r["count"] * r["gflop_per_image"] for r in conv)
    for name in ("bf16", "fp32"):
        for kind in ("fwd", "fwd_bwd"):
            secs = sum(r["count"] * r["gflop_per_image"] / max(r[f"{name}_{kind}"], 1e-3) for r in conv)
            summary[f"{name}_{kind}_weighted"] = round(flop / secs, 1)
    summary["gate_gflop_fraction"] = round(sum(r["count"] * r["gflop_per_image"] for r in rows if r["gate"]) /
                                           sum(r["count"] * r["gflop_per_image"] for r in rows), 5)
    return summary


def peak_of(res: dict) -> dict:
    """Best rate per dtype over every kernel measured (GEMM and convolution, forward and forward+backward)."""
    out = {}
    for name in ("bf16", "fp32"):
        cands = list(res["gemm"][name].values())
        for summary in res["conv"].values():
            cands += [r[f"{name}_fwd"] for r in summary["shapes"]] + [r[f"{name}_fwd_bwd"] for r in summary["shapes"]]
        out[name] = max(cands)
    return out


def measure(backbones: list[str], batch: dict[str, int], repeats: int) -> dict:
    dtypes = {"bf16": torch.bfloat16, "fp32": torch.float32}
    res: dict = {"gemm": {}, "conv": {}}
    for name, dt in dtypes.items():
        res["gemm"][name] = {f"{m}x{k}x{n}": round(gemm_rate(m, k, n, dt, repeats), 1)
                             for m, k, n in [(1024, 1024, 1024), (2048, 2048, 2048), (64, 512, 4000)]}
    for bb in backbones:
        rows = []
        for shape in conv_shapes(bb):
            row = dict(shape)
            row["gflop_per_image"] = float(f"{row['gflop_per_image']:.4g}")
            for name, dt in dtypes.items():
                f, fb = conv_rates(shape, batch[bb], dt, repeats)
                row[f"{name}_fwd"], row[f"{name}_fwd_bwd"] = float(f"{f:.4g}"), float(f"{fb:.4g}")
            rows.append(row)
            print(bb, row, flush=True)
        summary = conv_summary(rows, batch[bb])
        res["conv"][bb] = summary
    res["peak"] = peak_of(res)
    return res


def measured_peak(threads: int | None = None, path: Path | None = None) -> dict | None:
    """The measured peak (``bench/results/peak.json``) if it was measured on ``threads`` threads
    (default: torch's), else None: ``{"bf16": GFLOP/s, "fp32": GFLOP/s, "conv_fwd_bwd": {backbone:
    {"bf16": .., "fp32": ..}}, "date", "threads"}``."""
    path = path or RESULTS / "peak.json"
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    if d.get("threads") != (threads or torch.get_num_threads()):
        return None
    return {**d["peak"], "date": d["date"], "threads": d["threads"],
            "conv_fwd_bwd": {bb: {k: s[f"{k}_fwd_bwd_weighted"] for k in ("bf16", "fp32")} for bb, s in d["conv"].items()}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="default: torch's (what the KD step uses)")
    ap.add_argument("--backbones", nargs="*", default=["ir_cbam_18", "ir_cbam_tiny"])
    ap.add_argument("--batch", nargs="*", type=int, default=[32, 64], help="per backbone (the KD bench batches)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--resummarize", default=None, metavar="JSON",
                    help="recompute the summaries of a saved measurement (no timing) and write them as the latest")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch = dict(zip(args.backbones, args.batch + [args.batch[-1]] * len(args.backbones)))
    t0 = time.perf_counter()
    if args.resummarize:
        res = json.loads(Path(args.resummarize).read_text())
        for bb, summary in res["conv"].items():
            for r in summary["shapes"]:
                r.setdefault("gate", r["hw"] == 1 or r["cin"] == 2)
            res["conv"][bb] = conv_summary(summary["shapes"], summary["batch"])
        res["peak"] = peak_of(res)
        res["resummarized_from"] = Path(args.resummarize).name
        args.backbones = list(res["conv"])
        batch = {bb: s["batch"] for bb, s in res["conv"].items()}
        return _write(res, args, batch)
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "threads": torch.get_num_threads(), "torch": torch.__version__,
           "cpu_flags": sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx", "avx2", "fma"))),
           "repeats": args.repeats}
    res.update(measure(args.backbones, batch, args.repeats))
    res["nominal_estimate"] = machine_peak_gflops(res["threads"])
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return _write(res, args, batch)


def _write(res: dict, args, batch: dict) -> int:
    out = Path(args.out)
    if not res.get("resummarized_from"):
        write_json(out / f"peak_{time.strftime('%Y%m%d-%H%M%S')}.json", res)
    write_json(out / "peak.json", res)
    md = out / "peak.md"
    head = ("| date | threads | bf16 peak | fp32 peak | bf16 GEMM 2048³ | fp32 GEMM 2048³ | "
            + " | ".join(f"{bb} convs bf16 fwd / fwd+bwd (b{batch[bb]})" for bb in args.backbones)
            + " | nominal estimate bf16 / fp32 | torch |\n|---|---:|---:|---:|---:|---:|"
            + "---:|" * len(args.backbones) + "---|---|\n")
    conv_cells = " | ".join(f"{res['conv'][bb]['bf16_fwd_weighted']} / {res['conv'][bb]['bf16_fwd_bwd_weighted']}"
                            for bb in args.backbones)
    when = res["date"] + (" (re-summarised)" if res.get("resummarized_from") else "")
    row = (f"| {when} | {res['threads']} | {res['peak']['bf16']} | {res['peak']['fp32']} | "
           f"{res['gemm']['bf16']['2048x2048x2048']} | {res['gemm']['fp32']['2048x2048x2048']} | {conv_cells} | "
           f"{res['nominal_estimate']['bf16']} / {res['nominal_estimate']['fp32']} | {res['torch']} |\n")
    text = md.read_text() if md.is_file() else (
        "# Measured peak (bench/peak.py), GFLOP/s\n\nBest of several runs per kernel on the threads the KD step "
        "uses; the peak is the best kernel (GEMM or one of the backbones' convolutions, channels_last). The conv "
        "columns are the backbone's FLOP-weighted convolution rate (forward, and forward + backward as training "
        "runs it). The nominal estimate (`lqlib.precision.machine_peak_gflops`) is a note only.\n\n")
    if head.splitlines()[0] not in text:
        text += "\n" + head
    write_text(md, text + row)
    print(json.dumps({k: res[k] for k in ("peak", "gemm", "nominal_estimate", "seconds")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
