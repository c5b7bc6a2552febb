"""The demo: synthetic agency exports, the two demo agents' configs, and the end-to-end run.

    generate(out_dir, seed=7, people=6000) -> SyntheticFiles      (gateway.demo._synthetic)
    write_agent_configs(pki_root, data_dir, address=...) -> {agency: path}
    run_demo(folder, console, people=..., seed=...) -> exit code  (gateway.demo._run)

Nothing here imports the agent package; the configs are plain TOML text in its format.
"""

from __future__ import annotations

from typing import Any

from gateway.demo._agent_configs import write_agent_configs
from gateway.demo._synthetic import (
    DIRTY_ROWS,
    PLANTED_CELLS,
    DirtyRow,
    PlantedCell,
    SyntheticFiles,
    generate,
)

__all__ = [
    "DIRTY_ROWS",
    "PLANTED_CELLS",
    "DirtyRow",
    "PlantedCell",
    "SyntheticFiles",
    "generate",
    "run_demo",
    "write_agent_configs",
]


def __getattr__(name: str) -> Any:
    # the runner pulls in the whole server; load it only when someone runs the demo
    if name == "run_demo":
        from gateway.demo._run import run_demo

        return run_demo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
