"""Face data for lqlib: InsightFace ``.bin`` pair sets, MXNet/InsightFace ``.rec`` packs, identity
folders, the train/eval splits of the shared data, the prepare step that packs them, and the align step
that turns photographs into 112×112 ArcFace crops (:mod:`lqlib.data.align`).

Every loader returns ``uint8`` **RGB** images, ``[3, H, W]`` per sample or ``[N, 3, H, W]`` stacked
(see :mod:`lqlib.images` for the conventions up to the model boundary).
"""
from .align import align_folder
from .binfile import BinFormatError, load_bin, read_bin, write_bin
from .datasets import ImageDecodeError, bgr_to_rgb, decode_rgb, encode_jpeg, read_image_rgb
from .folders import FolderDataset, UnlabeledFolderDataset, scan_identity_folders
from .prepare import prepare
from .splits import (SPLITS, EvalPair, PairSet, PairSpec, SplitError, Split, TrainSample,
                        get_split, lfw_10fold, lfw_half, load_pairs, parse_pairs)
from .recordio import RecordDataset, RecordFormatError, write_rec

__all__ = [
    "load_bin", "read_bin", "write_bin", "BinFormatError",
    "RecordDataset", "write_rec", "RecordFormatError",
    "FolderDataset", "UnlabeledFolderDataset", "scan_identity_folders",
    "PairSet", "load_pairs", "get_split", "SPLITS", "Split", "SplitError",
    "PairSpec", "EvalPair", "TrainSample", "parse_pairs", "lfw_half", "lfw_10fold",
    "ImageDecodeError", "decode_rgb", "read_image_rgb", "encode_jpeg", "bgr_to_rgb",
    "prepare", "align_folder",
]
