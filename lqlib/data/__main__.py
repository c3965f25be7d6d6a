"""Command line: ``python -m lqlib.data prepare --data-dir DIR --out DIR [--quality Q] [--max-mb 55] [--force]``
``python -m lqlib.data fetch lfw|celeba [--from PATH]`` (public face data into the user cache, aligned; see
:mod:`lqlib.data.fetch`), ``python -m lqlib.data align --in RAW --out DIR`` (photographs → 112×112 ArcFace crops, see
:mod:`lqlib.data.align`) and ``python -m lqlib.data validation --out DIR`` (the lfw-half-val split's definition: ``validation_pairs.txt``
and ``validation_split.json``, for a study's results)."""
from __future__ import annotations

import argparse
import os
import sys

from ..errors import command
from ..paths import ENV_DATA
from .align import NO_FACE_POLICIES, PICKERS, align_folder
from .fetch import FETCHERS, LFW_VARIANTS
from .prepare import DEFAULT_OUT, QUALITIES, prepare, prepare_insightface


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lqlib.data", description="lqlib face-data tools")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="pack the lfw-half split into train.rec/.idx, lfw_half.bin, lfw.bin")
    p.add_argument("--data-dir", default=None,
                   help=f"face-data directory (default: ${ENV_DATA}, then ../shared/data beside the repository)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT} under the repository)")
    p.add_argument("--quality", type=int, default=None,
                   help=f"JPEG quality (default: the highest of {list(QUALITIES)} that fits --max-mb)")
    p.add_argument("--max-mb", type=float, default=55.0,
                   help="size limit in MB (10^6 bytes) for train.rec + train.idx + lfw_half.bin (default 55)")
    p.add_argument("--force", action="store_true", help="rebuild even if the packs are up to date")
    p.add_argument("--threads", type=int, default=None, help="encoding threads (default: min(4, CPU count))")
    p.add_argument("--images", default=None,
                   help="InsightFace layout instead: a folder of aligned faces <identity>/<file> (align's or fetch's "
                        "output); with --pairs, writes train.rec/.idx (identities in no pair) + <NAME>.bin per pair list")
    p.add_argument("--pairs", action="append", default=[], metavar="NAME=PAIRS.txt",
                   help="with --images: a test set, e.g. agedb_30=agedb_pairs.txt cplfw=cplfw_pairs.txt (LFW's "
                        "pairs.txt format over --images)")
    v = sub.add_parser("validation", help="write the lfw-half-val split's definition (pairs.txt format + statistics)")
    v.add_argument("--data-dir", default=None,
                   help=f"face-data directory (default: ${ENV_DATA}, then ../shared/data beside the repository)")
    v.add_argument("--out", required=True, help="folder for validation_pairs.txt and validation_split.json")
    a = sub.add_parser("align", help="detect faces (YuNet) and warp them onto the 112x112 ArcFace template")
    a.add_argument("--in", dest="src", required=True, help="folder of photographs (<identity>/<file> or any tree)")
    a.add_argument("--out", required=True, help="output folder: <identity>/<file>.jpg + manifest.json")
    a.add_argument("--pick", default="largest", choices=sorted(PICKERS),
                   help="the face kept when a photo holds several: largest (default) or center (LFW)")
    a.add_argument("--no-face", default="skip", choices=NO_FACE_POLICIES,
                   help="photos with no face: skip (listed in the manifest) or median (median landmarks of the run)")
    a.add_argument("--quality", type=int, default=95, help="JPEG quality of the crops (default 95)")
    a.add_argument("--size", type=int, default=112, help="crop size in pixels (default 112, the ArcFace template)")
    a.add_argument("--threads", type=int, default=None, help="worker threads (default: min(4, CPU count))")
    a.add_argument("--batch", type=int, default=64, help="photos per batch (progress is saved after each)")
    a.add_argument("--score", type=float, default=0.6, help="detector score threshold (default 0.6)")
    a.add_argument("--force", action="store_true", help="align everything again (ignore a previous run in --out)")
    f = sub.add_parser("fetch", help="download (or take --from), verify, extract and align a public face dataset "
                                      "into the user cache")
    f.add_argument("dataset", choices=sorted(FETCHERS), help="lfw: LFW photographs + pairs.txt; celeba: the "
                   "CelebA-299 side of lfw-half from your own CelebA download")
    f.add_argument("--from", dest="source", default=None,
                   help="an archive, a folder holding the downloaded files, or an extracted folder (offline)")
    f.add_argument("--cache", default=None, help="cache folder (default: $LQLIB_CACHE, else the platform's cache dir)")
    f.add_argument("--variant", default="original", choices=sorted(LFW_VARIANTS), help="lfw: which archive")
    f.add_argument("--threads", type=int, default=None, help="alignment threads (default: min(4, CPU count))")
    f.add_argument("--sha256", action="append", default=[], metavar="FILE=HEX",
                   help="expected SHA-256 of a file by name, instead of the published one (a mirror's own copy)")
    return parser


def _fetch(args) -> int:
    sums = dict(kv.split("=", 1) for kv in args.sha256 if "=" in kv)
    bad = [kv for kv in args.sha256 if "=" not in kv]
    if bad:
        raise ValueError(f"--sha256 {bad[0]!r}: expected FILE=HEX")
    kw = {"variant": args.variant} if args.dataset == "lfw" else {}
    FETCHERS[args.dataset](args.source, cache=args.cache, checksums=sums, threads=args.threads, **kw)
    return 0


def _align(args) -> int:
    m = align_folder(args.src, args.out, pick=args.pick, no_face=args.no_face, quality=args.quality, size=args.size,
                     threads=args.threads or min(4, os.cpu_count() or 1), batch=args.batch,
                     score_threshold=args.score, force=args.force)
    c = m["counts"]
    print(f"aligned {c['aligned']} photos, {c['no_face']} with no face ({args.no_face}), {c['corrupt']} unreadable "
          f"→ {args.out} (manifest.json)")
    for r in m["corrupt"]:
        print(f"  unreadable: {r['file']}: {r['error']}", file=sys.stderr)
    return 0


def _prepare(args) -> int:
    if args.quality is not None and not 1 <= args.quality <= 100:
        print(f"error: --quality must be in 1..100, got {args.quality}", file=sys.stderr)
        return 2
    if args.images or args.pairs:
        bad = [kv for kv in args.pairs if "=" not in kv]
        if not args.images or bad or not args.pairs:
            raise ValueError("prepare: the InsightFace layout needs --images DIR and --pairs NAME=PAIRS.txt "
                             f"(got --images {args.images!r}, --pairs {args.pairs})")
        prepare_insightface(args.images, args.out, dict(kv.split("=", 1) for kv in args.pairs),
                            quality=args.quality or 95, threads=args.threads)
        return 0
    prepare(args.data_dir, args.out, quality=args.quality, max_mb=args.max_mb, force=args.force,
            threads=args.threads)
    return 0


def _validation(args) -> int:
    from .validation import validation_definition

    d = validation_definition(args.data_dir, out=args.out)
    print(f"lfw-half-val: {d['eval_pairs']} pairs in {d['eval_folds']} folds, {d['heldout_identities']} held-out "
          f"identities → {args.out}/validation_pairs.txt, validation_split.json")
    return 0


COMMANDS = {"prepare": _prepare, "validation": _validation, "align": _align, "fetch": _fetch}


# a missing image or pairs file, a malformed option value (DataNotFoundError, SplitError, FetchError,
# DetectorUnavailable ... are LqlibErrors)
@command(FileNotFoundError, ValueError)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
