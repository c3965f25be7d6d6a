"""lqlib: knowledge-distillation workbench for low-quality face recognition."""

__version__ = "0.1.0"

