"""Numerics policy: where bf16 autocast is used, and the fp32 islands inside it.

Training and evaluation run the backbones under bf16 autocast where the hardware does bf16 well
(CUDA; CPUs with AVX-512 BF16 or AMX), fp32 elsewhere (:func:`autocast_dtype`). Some computations
must stay fp32 whatever the surrounding autocast says — the margin head's cosines and margins (a bf16
cosine of 0.99979 rounds to 1.0, and a target logit at s = 64 moves by up to ~2.5), the relational
Gram matrix, the losses. :func:`full_precision` opens such an island: autocast off, inputs cast to
float32 by the caller.
"""
from __future__ import annotations

import contextlib
import functools
import os

import torch


@contextlib.contextmanager
def full_precision(device_type: str):
    """Disable autocast for ``device_type`` ("cpu" / "cuda") inside the block."""
    with torch.autocast(device_type=device_type, enabled=False):
        yield


@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of this machine (``/proc/cpuinfo``; empty where unreadable)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


#: ``LQLIB_CPU_BF16=0`` / ``1`` overrides what the CPU's flags say about native bf16 — to reproduce on one machine
#: what another does (with ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``: an AVX2-only CPU, for timings)
ENV_CPU_BF16 = "LQLIB_CPU_BF16"


def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX-512 BF16 or AMX-BF16), so bf16 autocast pays off;
    ``$LQLIB_CPU_BF16`` (``0``/``1``) overrides the flags."""
    env = os.environ.get(ENV_CPU_BF16, "").strip()
    if env in ("0", "1"):
        return env == "1"
    if env:
        raise ValueError(f"{ENV_CPU_BF16} must be 0 or 1, got {env!r}")
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def autocast_dtype(device_type: str, amp: str = "auto") -> torch.dtype | None:
    """The autocast dtype for a device: ``amp="auto"`` → bf16 on CUDA and on bf16-capable CPUs,
    None (fp32) otherwise; ``"bf16"`` forces bf16; ``"off"`` → None."""
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp != "auto":
        raise ValueError(f"amp must be 'auto', 'bf16' or 'off', got {amp!r}")
    if device_type == "cuda" or (device_type == "cpu" and cpu_has_bf16()):
        return torch.bfloat16
    return None


def autocast(device_type: str, dtype: torch.dtype | None):
    """``torch.autocast(device_type, dtype)`` or a no-op context when ``dtype`` is None."""
    return torch.autocast(device_type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def machine_peak_gflops(threads: int) -> dict:
    """Estimated peak GFLOP/s of ``threads`` cores of this CPU, fp32 and bf16, with the assumption.

    FLOPs per cycle per core: AVX-512 machines with two 512-bit FMA pipes (Intel server parts) 64 fp32,
    AMD Zen 4 (AVX-512 on two 256-bit pipes) 32 fp32; AVX2 with FMA 32; bf16 dot products (AVX512_BF16,
    VDPBF16PS) double the fp32 figure, AMX is not modelled. The clock is ``cpu MHz`` of /proc/cpuinfo
    (the nominal clock; boost makes the real peak higher)."""
    mhz = 0.0
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    mhz = float(line.split(":")[1])
                    break
    except OSError:
        pass
    flags = cpu_flags()
    amd = False
    try:
        with open("/proc/cpuinfo") as f:
            amd = "AuthenticAMD" in f.read(4096)
    except OSError:
        pass
    if "avx512f" in flags:
        fp32 = 32 if amd else 64
    elif "fma" in flags:
        fp32 = 32
    else:
        fp32 = 8
    bf16 = 2 * fp32 if "avx512_bf16" in flags else fp32
    ghz = mhz / 1000.0
    return {"fp32": round(threads * ghz * fp32, 1), "bf16": round(threads * ghz * bf16, 1),
            "assumption": f"{threads} cores × {ghz:.2f} GHz × {fp32} fp32 / {bf16} bf16 FLOP/cycle "
                          f"({'AMD, AVX-512 on 256-bit pipes' if amd and 'avx512f' in flags else 'from CPU flags'})"}
