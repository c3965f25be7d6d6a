"""``lqlib.data align`` on real photographs: speed, landmark error and sface verification vs a reference alignment.

    python bench/align_check.py --raw ../shared/raw/lfw-raw-folds12 --ref ../shared/data/lfw/images \\
        [--threads 2] [--work runs/align_check] [--out bench/results]

``--raw`` holds unaligned LFW photographs (``<Name>/<Name>_NNNN.jpg``) and their ``pairs.txt``; ``--ref`` the same
images aligned by another detector onto the same ArcFace template (the shared data: MTCNN landmarks).

1. **Speed**: :func:`lqlib.data.align.align_folder` on all of ``--raw`` with ``--threads`` workers (``pick=center``,
   ``no_face=median`` — how the reference treated LFW), timed end to end (decode, detect, warp, JPEG encode,
   write): images/s, and the minutes all 13,233 LFW images would take at that rate.
2. **Landmark error** in pixels at 112: each reference crop is registered onto its raw photograph (OpenCV's ECC,
   affine, started from lqlib's own transform), which gives where the reference put the five template points in
   the raw photograph; mapped through lqlib's transform, their distance to the template points is the error of
   lqlib's crop against the reference (0 when both crops coincide). Per image the mean of the five points;
   median and 95th percentile over images. ECC's own error is measured the same way with lqlib's crop as the
   "reference" on every 8th image (it should be ~0).
3. **sface verification** at ×1 on the pairs of ``pairs.txt`` (official folds, no flip), from lqlib's crops and
   from the reference crops in the same run.

Writes ``<out>/align_check_<stamp>.json`` and appends a row to ``<out>/align_check.md``; a contact sheet of 24
aligned photographs (those with no face found first) goes to ``<work>/contact_sheet.png`` (not committed: it
shows real faces).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def cpu_name() -> str:
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


SELF_CHECK_EVERY = 8


def landmark_errors(work: Path, ref: Path, records: list[dict]) -> dict:
    import cv2

    from lqlib.data.align import TEMPLATE, apply_transform

    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-6)

    def ref_points(raw_gray, crop_path, m):
        crop = cv2.imread(str(crop_path), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        w0 = cv2.invertAffineTransform(m.astype(np.float32))
        _, w = cv2.findTransformECC(crop, raw_gray, w0, cv2.MOTION_AFFINE, crit, None, 5)
        return apply_transform(w.astype(np.float64), TEMPLATE)  # the crop's template points, in the raw photo

    err, self_err, failed = [], [], []
    for i, r in enumerate(records):
        m = np.array(r["transform"])
        raw = cv2.imread(str(Path(r["raw_root"]) / r["file"]), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        try:
            p_ref = ref_points(raw, ref / r["file"], m)
            if i % SELF_CHECK_EVERY == 0:  # ECC's own error, on every 8th image
                self_err.append(np.linalg.norm(apply_transform(m, ref_points(raw, work / r["out"], m)) - TEMPLATE, axis=1))
        except cv2.error:
            failed.append(r["file"])
            continue
        err.append(np.linalg.norm(apply_transform(m, p_ref) - TEMPLATE, axis=1))
    e, s = np.array(err), np.array(self_err)
    per_img = e.mean(1)
    return {"images": len(e), "ecc_failed": failed,
            "median_px": float(np.median(per_img)), "p95_px": float(np.percentile(per_img, 95)),
            "mean_px": float(per_img.mean()), "max_px": float(per_img.max()),
            "per_point_median_px": dict(zip(["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"],
                                            np.median(e, 0).round(3).tolist())),
            "ecc_self_median_px": float(np.median(s.mean(1))), "ecc_self_p95_px": float(np.percentile(s.mean(1), 95)),
            "ecc_self_images": len(s)}


def verification(raw: Path, roots: dict[str, Path], threads: int) -> list[dict]:
    import torch

    from lqlib.data import parse_pairs, read_image_rgb
    from lqlib.data.splits import lfw_image_path
    from lqlib.evaluation import evaluate
    from lqlib.teachers.sface import load_sface

    specs = parse_pairs(raw / "pairs.txt")
    issame = np.array([s.issame for s in specs])
    folds = np.array([s.fold for s in specs])
    teacher = load_sface(threads=threads)
    rows = []
    for name, root in roots.items():
        images = torch.stack([read_image_rgb(lfw_image_path(root, n, k)) for s in specs
                              for n, k in ((s.name1, s.n1), (s.name2, s.n2))])
        r = evaluate(teacher, (images, issame, folds), scales=[1], flip=False).iloc[0]
        rows.append({"crops": name, "root": str(root), "pairs": len(specs), "folds": int(folds.max()) + 1,
                     "acc_mean": float(r["acc_mean"]), "acc_std": float(r["acc_std"]), "auc": float(r["auc"]),
                     "tar_far1e-3": float(r["tar_far1e-3"])})
    return rows


def contact_sheet(work: Path, records: list[dict], path: Path, n: int = 24) -> Path:
    """``n`` crops, 6 per row: the photos with no face found first, then the 6 lowest detection scores, the 6
    photos with the most faces (the picker's choice shows), then evenly spaced others; under each the detection
    score and the number of faces found (or 'no face')."""
    import cv2

    from lqlib.io import write_bytes

    pick = [r for r in records if r["status"] == "no_face" and r.get("out")][:n]
    aligned = [r for r in records if r["status"] == "aligned"]
    for key in (lambda r: r["score"], lambda r: -r["faces"]):
        pick += [r for r in sorted(aligned, key=key) if r not in pick][:max(0, min(6, n - len(pick)))]
    rest = [r for r in aligned if r not in pick]
    pick += [rest[i] for i in np.linspace(0, len(rest) - 1, n - len(pick)).astype(int)] if n > len(pick) else []
    tiles = []
    for r in pick:
        tile = np.full((130, 112, 3), 255, np.uint8)
        tile[:112] = cv2.imread(str(work / r["out"]))
        label = "no face: median" if r["status"] == "no_face" else f"{r['score']:.2f} {r['faces']}f"
        cv2.putText(tile, label, (2, 126), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0) if r["status"] == "aligned"
                    else (0, 0, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    rows = [np.hstack(tiles[i:i + 6]) for i in range(0, len(tiles), 6)]
    ok, buf = cv2.imencode(".png", np.vstack(rows))
    write_bytes(path, buf.tobytes())
    return path


def main(argv=None) -> int:
    from lqlib import io, paths
    from lqlib.data.align import align_folder

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw", default="../shared/raw/lfw-raw-folds12")
    ap.add_argument("--ref", default="../shared/data/lfw/images")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default="runs/align_check", help="aligned crops and the contact sheet (git-ignored)")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args(argv)
    raw, ref, work = paths.resolve(args.raw), paths.resolve(args.ref), paths.resolve(args.work)
    t0 = time.perf_counter()
    m = align_folder(raw, work / "crops", pick="center", no_face="median", threads=args.threads, force=True,
                     progress=False)
    seconds = time.perf_counter() - t0
    n = len(m["images"])
    speed = {"images": n, "threads": args.threads, "seconds": seconds, "images_per_s": n / seconds,
             "lfw_13233_minutes": 13233 / (n / seconds) / 60}
    print(f"align: {n} photos in {seconds:.1f} s = {n / seconds:.1f} images/s on {args.threads} threads "
          f"({cpu_name()}); all of LFW (13,233) ≈ {speed['lfw_13233_minutes']:.1f} min; counts {m['counts']}")
    records = [{**r, "raw_root": str(raw)} for r in m["images"] if r["status"] == "aligned"]
    lm = landmark_errors(work / "crops", ref, records)
    print(f"landmark error vs reference (px at 112, mean of 5 points per image): median {lm['median_px']:.2f}, "
          f"p95 {lm['p95_px']:.2f}, max {lm['max_px']:.2f} over {lm['images']} images "
          f"(ECC self-check median {lm['ecc_self_median_px']:.3f}, p95 {lm['ecc_self_p95_px']:.3f}; "
          f"{len(lm['ecc_failed'])} registrations failed)")
    ver = verification(raw, {"lqlib align (YuNet)": work / "crops", "reference (MTCNN)": ref}, args.threads)
    for r in ver:
        print(f"sface ×1 on {r['pairs']} pairs ({r['folds']} folds), {r['crops']:<22}: acc {r['acc_mean']:.2f} ± "
              f"{r['acc_std']:.2f} %, AUC {r['auc']:.4f}, TAR@FAR1e-3 {r['tar_far1e-3']:.2f} %")
    diff = ver[0]["acc_mean"] - ver[1]["acc_mean"]
    print(f"difference (lqlib − reference): {diff:+.2f} points")
    sheet = contact_sheet(work / "crops", m["images"], work / "contact_sheet.png")
    print(f"contact sheet: {sheet}")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = paths.resolve(args.out)
    io.write_json(out / f"align_check_{stamp}.json", {
        "command": " ".join(["python", *sys.argv]) if argv is None else f"main({list(argv)!r})", "stamp": stamp,
        "cpu": cpu_name(), "cores": os.cpu_count(), "load_avg": os.getloadavg(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "settings": m["settings"], "counts": m["counts"],
        "no_face": m["no_face"], "speed": speed, "landmarks": lm, "verification": ver, "acc_difference": diff})
    md = out / "align_check.md"
    head = ("# lqlib.data align on raw LFW photographs (folds 1–2)\n\n`bench/align_check.py`: speed end to end "
            "(decode, YuNet, warp, JPEG, write); landmark error of lqlib's crops against the reference crops "
            "(MTCNN), px at 112, per-image mean of the 5 points; sface ×1 accuracy on the 1,200 pairs from both "
            "crop sets in one run.\n\n| date | CPU | threads | images/s | LFW min | lm median | lm p95 | "
            "sface lqlib | sface ref | diff |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    text = md.read_text(encoding="utf-8") if md.is_file() else head
    text += (f"| {stamp} | {cpu_name()} | {args.threads} | {speed['images_per_s']:.1f} | "
             f"{speed['lfw_13233_minutes']:.1f} | {lm['median_px']:.2f} | {lm['p95_px']:.2f} | "
             f"{ver[0]['acc_mean']:.2f} | {ver[1]['acc_mean']:.2f} | {diff:+.2f} |\n")
    io.write_text(md, text)
    print(f"[bench] {time.perf_counter() - t0:.0f} s; wrote {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
