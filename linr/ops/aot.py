"""Compile every Triton kernel variant for a GPU this machine may not have (sm_90: H100/H200).

    python -m linr.ops.aot            # what `make gpu-compile` runs
    python -m linr.ops.aot --only fused_scan --jobs 2

Each kernel module lists the specializations its planner can produce as `Variant`s, from a
generator named in GENERATORS ("module:function"); a new kernel joins by adding its own.
Every variant is compiled ahead of time (`triton.compile` on an `ASTSource`, as
`triton.tools.compile` does) in a process pool, with a fresh Triton cache, and reported on
one line: registers, spill bytes (ptxas's report), shared memory, resident programs per SM
(linr/ops/occupancy.py, the planner's formula) and the tensor-core instructions in its PTX.
The exit status is 1 when a variant fails to compile, needs more shared memory than one
program may have, lacks the tensor-core instruction its mode is for, or spills at all (any
spill store) in a default path (forced variants, which only tests select, may spill). A
variant may carry the shapes its planner falls back to when ptxas spills in it (the fused
scan's topk_search.shape_candidates): they are compiled in order until one does not spill,
as the planner does on a GPU, and the gate applies to the one that runs. See docs/gpu.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import importlib
import os
import re
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from linr.ops.occupancy import SM90, programs_per_sm

# "module:function" of each kernel's variant generator (each yields Variant).
GENERATORS = (
    "linr.ops.scan_variants:aot_variants",
    "linr.ops.rescore:aot_variants",
    "linr.ops.hamming:aot_variant_specs",
)

TARGET = ("cuda", 90, 32)  # H100 / H200
# Bytes of spill stores per thread a default path may have: none. ptxas sometimes trades a
# value or two for the register count it aims at (8 bytes at 168 registers, Triton 3.6);
# the planner then picks another shape for it (topk_search.kernel_shape), so that what runs
# by default never touches local memory.
SPILL_LIMIT_BYTES = 0
_TC = re.compile(r"\b(wgmma\.mma_async|mma\.sync)\.[\w.]*")
_TC_TYPES = ("s8", "f16", "bf16", "tf32", "e4m3", "e5m2", "b1")


@dataclass(frozen=True)
class Variant:
    """One specialization of a kernel, as the planner would launch it on a GPU.

    fn: "module:name" of the @triton.jit function. signature: Triton types of the runtime
    arguments ("*fp32", "i32", ...). constexprs: the compile-time arguments (an int argument
    the launch passes as 1 belongs here too: Triton specializes on it). aligned: arguments a
    launch passes 16-byte aligned / divisible by 16. labels: what the report line shows.
    options: launch options beyond num_warps / num_stages that the launcher passes.
    tensor_core: the operand type whose mma/wgmma the PTX must hold ("s8", "f16", "tf32"),
    or None. default: a path the planner takes by itself (not only when a test forces it).
    fallbacks: what the planner launches instead, in order, while the one before spills.
    note: shown at the end of the report line (how a fallback differs).
    """

    kernel: str
    fn: str
    signature: tuple[tuple[str, str], ...]
    constexprs: tuple[tuple[str, object], ...]
    aligned: tuple[str, ...]
    num_warps: int
    num_stages: int
    labels: tuple[tuple[str, object], ...]
    tensor_core: str | None = None
    default: bool = True
    options: tuple[tuple[str, object], ...] = ()  # more compile options, e.g. maxnreg
    fallbacks: tuple[Variant, ...] = ()
    note: str = ""


@dataclass
class Result:
    variant: Variant
    error: str | None = None
    regs: int = 0
    spill: int = 0  # bytes of spill stores per thread
    shared: int = 0  # bytes of shared memory per program
    tc: list[str] = field(default_factory=list)  # tensor-core instruction kinds in the PTX
    cpu_s: float = 0.0  # CPU seconds, ptxas included
    replaced: bool = False  # it spills, and the planner runs the next shape of its chain

    @property
    def occupancy(self) -> int:
        return programs_per_sm(self.regs, self.shared, self.variant.num_warps, SM90)

    def problems(self) -> list[str]:
        """Why this variant fails the check (empty: it passes)."""
        v = self.variant
        if self.error is not None:
            return ["compile error"]
        out = []
        if self.shared > SM90.shared_per_program:
            out.append(f"shared memory {self.shared} > {SM90.shared_per_program}")
        if v.default and self.spill > SPILL_LIMIT_BYTES and not self.replaced:
            out.append(f"spills {self.spill} bytes in a default path")
        if v.tensor_core is not None and not any(t.endswith("." + v.tensor_core) for t in self.tc):
            out.append(f"no {v.tensor_core} tensor-core instruction")
        return out

    def line(self) -> str:
        v = self.variant
        head = " ".join(f"{k}={val}" for k, val in v.labels)
        head = f"{v.kernel:<11} {head} warps={v.num_warps} stages={v.num_stages}"
        if self.error is not None:
            return f"{head}: error: {self.error}"
        tags = ([] if v.default else ["forced"]) + ([v.note] if v.note else [])
        if self.replaced:
            tags.append("spills: the planner runs the next shape")
        bad = self.problems()
        status = "FAIL " + "; ".join(bad) if bad else "ok"
        tc = ",".join(self.tc) or "none"
        return (
            f"{head}: {status} regs={self.regs} spill={self.spill} "
            f"smem={self.shared / 1024:.1f}K occ={self.occupancy} tc={tc} cpu={self.cpu_s:.1f}s"
            + (" " + " ".join(tags) if tags else "")
        )


def variants(only: str | None = None, match: str = "") -> Iterator[Variant]:
    """Every generator's variants; `only`: one kernel's; `match`: "B=1024,D=128" keeps
    those whose labels say so."""
    want = [tuple(kv.split("=", 1)) for kv in match.split(",") if kv]
    for spec in GENERATORS:
        mod, name = spec.split(":")
        for v in getattr(importlib.import_module(mod), name)():
            labels = {k: str(x) for k, x in v.labels}
            if (only is None or v.kernel == only) and all(labels.get(k) == x for k, x in want):
                yield v


_SPILL = re.compile(r"(\d+) bytes spill stores")
_REGS = re.compile(r"Used (\d+) registers")


def _capture_stdout(fn):  # type: ignore[no-untyped-def]
    """Run fn() with Python's stdout (where Triton prints the ptxas report) and file
    descriptor 1 sent to a temporary file; return (result, text)."""
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+") as f:
        os.dup2(f.fileno(), 1)
        try:
            with contextlib.redirect_stdout(f):
                out = fn()
        finally:
            f.flush()
            os.dup2(saved, 1)
            os.close(saved)
        f.seek(0)
        return out, f.read()


def compile_variant(v: Variant) -> Result:
    """Compile one variant for TARGET (in a worker process)."""
    t0 = _cpu_seconds()
    try:
        compiled, log = _capture_stdout(lambda: _compile(v))
    except Exception as e:  # the report names every failure; the exit status counts them
        msg = str(e).strip().splitlines() or [type(e).__name__]
        first = next((m for m in msg if "error" in m.lower()), msg[0])
        return Result(v, error=f"{type(e).__name__}: {first[:300]}", cpu_s=_cpu_seconds() - t0)
    regs = [int(m) for m in _REGS.findall(log)]
    spills = [int(m) for m in _SPILL.findall(log)]
    if not regs:  # TRITON_DUMP_PTXAS_LOG unset, or a Triton whose report reads differently
        return Result(v, error="no ptxas register report", cpu_s=_cpu_seconds() - t0)
    return Result(
        v,
        regs=max(regs),
        spill=max(spills, default=0),
        shared=int(compiled.metadata.shared),
        tc=sorted({_tc_kind(m.group(0)) for m in _TC.finditer(compiled.asm["ptx"])}),
        cpu_s=_cpu_seconds() - t0,
    )


def compile_chain(v: Variant) -> list[Result]:
    """Compile v and, where it is a default path that spills, its fallbacks in order until
    one does not (what the planner launches on a GPU); every result, in that order."""
    out = [compile_variant(v)]
    for f in v.fallbacks if v.default else ():
        last = out[-1]
        if last.error is not None or last.spill <= SPILL_LIMIT_BYTES:
            break
        last.replaced = True
        out.append(compile_variant(f))
    return out


def _compile(v: Variant):  # type: ignore[no-untyped-def]
    """triton.compile of one variant, as triton.tools.compile builds its source."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    mod, name = v.fn.split(":")
    fn = getattr(importlib.import_module(mod), name)
    constexprs = dict(v.constexprs)
    signature = {k: ("constexpr" if k in constexprs else t) for k, t in v.signature}
    for k in constexprs:
        signature.setdefault(k, "constexpr")
    missing = [a for a in fn.arg_names if a not in signature]
    if missing:
        raise ValueError(f"error: no type or value for {', '.join(missing)}")
    signature = {k: signature[k] for k in fn.arg_names}  # in the function's order
    attrs = {(fn.arg_names.index(a),): [["tt.divisibility", 16]] for a in v.aligned}
    src = ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
    options = {"num_warps": v.num_warps, "num_stages": v.num_stages, **dict(v.options)}
    return triton.compile(src, target=GPUTarget(*TARGET), options=options)


def _cpu_seconds() -> float:
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _tc_kind(instr: str) -> str:
    """'wgmma.mma_async.sync.aligned.m64n64k32.s32.s8.s8' -> 'wgmma.s8'."""
    parts = instr.split(".")
    kinds = [p for p in parts[2:] if p in _TC_TYPES]
    return f"{parts[0]}.{kinds[0] if kinds else '?'}"


def _init_worker(cache: str) -> None:
    os.environ["TRITON_CACHE_DIR"] = cache
    os.environ["TRITON_DUMP_PTXAS_LOG"] = "1"
    # Triton 3.9 warns when this is unset; 1 is its default and the launches' setting.
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")


def run(vs: Iterable[Variant], jobs: int) -> list[Result]:
    """Compile all variants with `jobs` processes and a Triton cache that starts empty."""
    cache = tempfile.mkdtemp(prefix="linr-aot-")
    try:
        ctx = __import__("multiprocessing").get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(
            jobs, mp_context=ctx, initializer=_init_worker, initargs=(cache,)
        ) as pool:
            results = []
            for chain in pool.map(compile_chain, vs):
                for r in chain:
                    print(r.line(), flush=True)
                    results.append(r)
            return results
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=2, help="compile processes (default 2)")
    ap.add_argument("--only", help="one kernel's variants (e.g. fused_scan)")
    ap.add_argument("--match", default="", help='labels to keep, e.g. "mode=INT8,D=128"')
    args = ap.parse_args(argv)
    import triton

    print(f"triton {triton.__version__}, target {TARGET[0]} sm_{TARGET[1]}", flush=True)
    t0 = time.perf_counter()
    results = run(list(variants(args.only, args.match)), args.jobs)
    failed = [r for r in results if r.problems()]
    cpu = sum(r.cpu_s for r in results)
    print(
        f"{len(results) - len(failed)} compiled, {len(failed)} failed "
        f"({time.perf_counter() - t0:.0f} s wall, {cpu:.0f} CPU s, {args.jobs} processes)"
    )
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
