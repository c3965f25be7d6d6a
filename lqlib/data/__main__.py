"""Command line: ``python -m lqlib.data prepare --data-dir DIR --out DIR [--quality Q] [--max-mb 55] [--force]``
and ``python -m lqlib.data validation --out DIR`` (the lfw-half-val split's definition: ``validation_pairs.txt``
and ``validation_split.json``, for a study's results)."""
from __future__ import annotations

import argparse
import sys

from ..errors import command
from ..paths import ENV_DATA
from .prepare import DEFAULT_OUT, QUALITIES, prepare


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
    v = sub.add_parser("validation", help="write the lfw-half-val split's definition (pairs.txt format + statistics)")
    v.add_argument("--data-dir", default=None,
                   help=f"face-data directory (default: ${ENV_DATA}, then ../shared/data beside the repository)")
    v.add_argument("--out", required=True, help="folder for validation_pairs.txt and validation_split.json")
    return parser


def _prepare(args) -> int:
    if args.quality is not None and not 1 <= args.quality <= 100:
        print(f"error: --quality must be in 1..100, got {args.quality}", file=sys.stderr)
        return 2
    prepare(args.data_dir, args.out, quality=args.quality, max_mb=args.max_mb, force=args.force,
            threads=args.threads)
    return 0


def _validation(args) -> int:
    from .validation import validation_definition

    d = validation_definition(args.data_dir, out=args.out)
    print(f"lfw-half-val: {d['eval_pairs']} pairs in {d['eval_folds']} folds, {d['heldout_identities']} held-out "
          f"identities → {args.out}/validation_pairs.txt, validation_split.json")
    return 0


COMMANDS = {"prepare": _prepare, "validation": _validation}


@command(FileNotFoundError)  # a missing image or pairs file (DataNotFoundError, SplitError ... are LqlibErrors)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
