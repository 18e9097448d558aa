"""The planner's compile-time choices and the ahead-of-time compile harness (linr/ops/aot.py).

Runs in the main pytest process (no interpreter): it compiles for sm_90 on this CPU.
`make gpu-compile` compiles every variant; here one of them, to keep the parsing honest.
"""

import dataclasses

import pytest
import torch

pytest.importorskip("triton")

from linr.ops import aot  # noqa: E402
from linr.ops.fused_scan import MODE_FP16, MODE_INT8  # noqa: E402
from linr.ops.occupancy import SM90, programs_per_sm  # noqa: E402
from linr.ops.topk_search import kernel_shape, make_plan, shape_candidates  # noqa: E402


@pytest.mark.parametrize(
    "regs,shared,warps,want",
    [
        (137, 20 << 10, 4, 3),  # 137 -> 144 per thread: 65536 // (144 * 128) = 3
        (128, 20 << 10, 4, 4),
        (255, 40 << 10, 8, 1),
        (64, 100 << 10, 4, 2),  # shared memory: 228 KiB // (100 + 1) KiB
        (32, 0, 4, 16),  # threads: 2048 // 128
        (64, 228 << 10, 4, 0),  # over the 227 KiB one program may have
    ],
)
def test_programs_per_sm(regs, shared, warps, want):
    assert programs_per_sm(regs, shared, warps, SM90) == want


def test_make_plan_fills_the_resident_programs():
    """n_splits covers one wave of the programs the compiled kernel lets each SM hold."""
    cpu = torch.device("cpu")  # 2 "SMs" for the interpreter
    plans = [make_plan(1, 10**7, 128, 10, torch.int8, cpu, programs_per_sm=p) for p in (1, 3, 6)]
    assert [p.n_splits for p in plans] == [3, 6, 12]  # k alone asks for 10 * 16 / 64 -> 3


def test_kernel_shape_fits_registers_and_shared_memory():
    s = kernel_shape(1, 384, torch.int8)
    assert (s.mode, s.block_d, s.num_stages, s.norms) == (MODE_FP16, 128, 3, False)
    s = kernel_shape(1024, 128, torch.int8)
    assert (s.mode, s.block_b, s.num_warps, s.norms) == (MODE_INT8, 64, 8, True)
    assert kernel_shape(1024, 384, torch.float16).block_b == 32  # 64 x 384 fp16 query tile
    assert kernel_shape(32, 384, torch.float32).num_stages == 2  # 3 stages: 240 KiB
    assert kernel_shape(130, 130, torch.float16).block_d == 32  # pads 130 to 160, not 256
    assert kernel_shape(1, 384, torch.float32).block_d == 64


def test_shape_candidates_fall_back_in_order():
    first, *rest = shape_candidates(1024, 384, torch.float32)
    assert first == kernel_shape(1024, 384, torch.float32)
    assert [(s.num_warps, s.block_d) for s in rest] == [(8, 64), (4, 32)]
    assert [s.num_warps for s in shape_candidates(1024, 128, torch.int8)] == [8, 4, 8]


def test_compile_chain_gates_the_shape_that_runs(monkeypatch):
    """A default variant that spills is replaced by its first fallback without spills; the
    gate fails only when the whole chain spills. Forced variants have no chain."""
    v = next(iter(aot.variants("fused_scan")))
    assert v.default and len(v.fallbacks) == 2 and v.fallbacks[0].note.startswith("fallback")
    spills = {}
    monkeypatch.setattr(
        aot,
        "compile_variant",
        lambda x: aot.Result(x, regs=96, spill=spills[x], shared=1024, tc=["mma.tf32"]),
    )
    spills = {v: 4, v.fallbacks[0]: 0, v.fallbacks[1]: 0}
    chain = aot.compile_chain(v)
    assert [r.variant for r in chain] == [v, v.fallbacks[0]]
    assert [r.problems() for r in chain] == [[], []] and chain[0].replaced
    assert "the planner runs the next shape" in chain[0].line()
    spills = {v: 4, v.fallbacks[0]: 8, v.fallbacks[1]: 12}
    chain = aot.compile_chain(v)
    assert [bool(r.problems()) for r in chain] == [False, False, True]
    forced = dataclasses.replace(v, default=False)
    spills = {forced: 4}
    assert [r.problems() for r in aot.compile_chain(forced)] == [[]]


def test_hamming_shape_and_variants():
    """The 1-bit scan's launch shape is what make gpu-compile compiles, as default paths."""
    from linr.ops import hamming

    shapes = [hamming.kernel_shape(b) for b in (1, 16, 17, 32, 33, 1024)]
    assert [(s.block_b, s.num_warps) for s in shapes] == [
        (16, 4),
        (16, 4),
        (32, 8),
        (32, 8),
        (64, 16),
        (64, 16),
    ]
    assert all(s.block_b * s.block_n == 8 * 32 * s.num_warps for s in shapes)
    plan = make_plan(1, 10**6, 16, 10, torch.uint8, torch.device("cpu"), shape=shapes[0])
    assert (plan.block_b, plan.num_warps, plan.num_stages) == (16, 4, 3)
    vs = list(aot.variants("hamming"))
    assert all(v.default for v in vs)
    for v in vs:
        lab, consts = dict(v.labels), dict(v.constexprs)
        s = hamming.kernel_shape(int(lab["B"]))
        assert (consts["BLOCK_B"], consts["BLOCK_N"], consts["KT"]) == (
            s.block_b,
            s.block_n,
            s.kt,
        )
        assert (v.num_warps, v.num_stages) == (s.num_warps, s.num_stages)
        assert consts.get("B") == (1 if lab["B"] == 1 else None)
    assert {dict(v.labels)["B"] for v in vs} == {1, 16, 32, 1024}


def test_default_paths_may_not_spill():
    v = next(iter(aot.variants("rescore")))
    assert aot.Result(v, regs=168, spill=8, shared=1024).problems() == [
        "spills 8 bytes in a default path"
    ]
    forced = dataclasses.replace(v, default=False)
    assert aot.Result(forced, regs=168, spill=8, shared=1024).problems() == []


def test_variants_cover_the_grid():
    vs = list(aot.variants("fused_scan"))
    assert len(vs) >= 300
    keys = [v.labels for v in vs]
    assert len(set(keys)) == len(keys)
    for v in vs:
        lab = dict(v.labels)
        assert v.tensor_core == {"FP32": "tf32", "FP16": "f16", "INT8": "s8"}[lab["mode"]]
        assert v.default == (lab["mode"] == ("INT8" if lab["B"] >= 128 else "FP16")) or (
            lab["codes"] != "int8"
        )


def test_compile_one_variant_for_sm90(monkeypatch, tmp_path):
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("TRITON_DUMP_PTXAS_LOG", "1")
    v = next(iter(aot.variants("rescore")))
    r = aot.compile_variant(v)
    assert r.error is None, r.error
    assert 16 <= r.regs <= 255 and r.spill == 0 and r.problems() == []
    assert r.line().startswith("rescore") and ": ok regs=" in r.line()
    consts = tuple((k, 3 if k == "BLOCK_P" else x) for k, x in v.constexprs)  # not a power of 2
    r = aot.compile_variant(dataclasses.replace(v, constexprs=consts))
    assert r.error is not None and r.problems() == ["compile error"]
    assert ": error: " in r.line()
