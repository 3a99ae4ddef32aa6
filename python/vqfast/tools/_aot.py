"""Shared types of the AOT compile report (no imports of the report itself: no cycle)."""
from __future__ import annotations

import dataclasses
from typing import Optional

from vqfast.errors import VQFastError

ARCHS = (90, 80)
ARCH_NAME = {90: "sm_90a", 80: "sm_80"}
SMEM_LIMIT = {90: 232448, 80: 166912}  # max dynamic shared memory per block (H100 227 KB, A100 163 KB)


class CompileReportError(VQFastError, RuntimeError):
    """The AOT toolchain (Triton, ptxas, nvdisasm) is missing or a kernel failed to compile."""


@dataclasses.dataclass
class Variant:
    """One shipped launch of one kernel: argument types (pointer dtype strings, ints, floats) and constexprs."""

    kernel: str                       # module-level name of the kernel in vqfast.kernels.<module>
    module: str                       # vqfast.kernels.<module>
    label: str                        # e.g. "fp32 tf32 D256"
    args: dict                        # name -> "*fp32"... (pointer) | int (value) | float
    constexprs: dict                  # name -> value (autotune / heuristic values included)
    num_warps: int
    num_stages: int
    config: str                       # human label of the launch config
    mma: Optional[str] = None         # "tf32" | "bf16" | "tf32x3" when the variant must run on tensor cores
    archs: tuple = ARCHS              # targets this launch ships for (autotune configs can be per arch)
