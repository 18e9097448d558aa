"""How many programs of a compiled kernel one streaming multiprocessor holds at once.

The planner (topk_search.py) sizes its grid from this, using the registers and shared memory
of the kernel that was actually compiled (on a GPU: Triton's compiled kernel; offline:
ptxas's report, see linr/ops/aot.py), so the two always agree. Pure Python: no Triton.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SmLimits:
    """Per-SM limits of a GPU (CUDA occupancy calculator terms)."""

    regs: int = 65536  # 32-bit registers per SM
    shared: int = 228 * 1024  # bytes of shared memory per SM
    shared_per_program: int = 227 * 1024  # the most one program may use
    threads: int = 2048
    programs: int = 32
    reserved_shared: int = 1024  # the runtime's per-program reservation (sm_80 and later)
    reg_unit: int = 256  # registers are allocated per warp in units of 256


# H100 and H200 (sm_90): the limits above are theirs.
SM90 = SmLimits()


def limits_of(device: object) -> SmLimits:
    """The limits of a CUDA device, read from torch's device properties."""
    import torch

    p = torch.cuda.get_device_properties(device)  # type: ignore[arg-type]
    return SmLimits(
        regs=int(getattr(p, "regs_per_multiprocessor", SM90.regs)),
        shared=int(getattr(p, "shared_memory_per_multiprocessor", SM90.shared)),
        shared_per_program=int(
            getattr(p, "shared_memory_per_block_optin", SM90.shared_per_program)
        ),
        threads=int(getattr(p, "max_threads_per_multi_processor", SM90.threads)),
    )


def programs_per_sm(n_regs: int, shared: int, num_warps: int, sm: SmLimits = SM90) -> int:
    """Resident programs per SM for a kernel of n_regs registers per thread, `shared` bytes
    of shared memory per program and num_warps warps; 0 when one program does not fit."""
    if shared > sm.shared_per_program:
        return 0
    warp_regs = -(-max(n_regs, 1) * 32 // sm.reg_unit) * sm.reg_unit
    by_regs = sm.regs // (warp_regs * num_warps)
    by_threads = sm.threads // (32 * num_warps)
    by_shared = sm.shared // (shared + sm.reserved_shared)
    return max(0, min(by_regs, by_threads, by_shared, sm.programs))
