"""Synthetic agency exports for the demo and benchmarks (see gateway.demo._synthetic)."""

from gateway.demo._synthetic import (
    DIRTY_ROWS,
    PLANTED_CELLS,
    DirtyRow,
    PlantedCell,
    SyntheticFiles,
    generate,
)

__all__ = ["DIRTY_ROWS", "PLANTED_CELLS", "DirtyRow", "PlantedCell", "SyntheticFiles", "generate"]
