"""linr.ops.scan_topk (fused scan + refine + group completion) against the plain reference,
through Triton's CPU interpreter at small, awkward sizes."""

from typing import Any

import pytest
import torch
from ops_helpers import check_topk, make_codes, pack_bits

pytest.importorskip("triton")

import linr.ops  # noqa: E402
from linr.ops.fused_scan import MODE_FP16, MODE_FP32, MODE_INT8  # noqa: E402
from linr.ops.topk_search import make_plan, run_plan, scan_topk_reference  # noqa: E402

DTYPES = [torch.int8, torch.float16, torch.float32]
_DEFAULT_MODE = {torch.int8: MODE_FP16, torch.float16: MODE_FP16, torch.float32: MODE_FP32}


def _filter(kind, n, gen, p=0.3):
    """(mask_words, rows, allowed) for a random filter of the given kind."""
    allowed = (
        torch.rand(n, generator=gen) < p if kind != "none" else torch.ones(n, dtype=torch.bool)
    )
    if kind == "mask":
        return pack_bits(allowed), None, allowed
    if kind == "rows":
        return None, torch.nonzero(allowed).flatten(), allowed
    return None, None, allowed


def _on(dev, *ts) -> list[Any]:
    return [None if t is None else t.to(dev) for t in ts]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("filt", ["none", "mask", "rows"])
@pytest.mark.parametrize("b,n,d,k", [(1, 1000, 130, 10), (3, 257, 1, 300), (5, 77, 33, 1000)])
def test_scan_topk_matches_reference(gen, dev, dtype, filt, b, n, d, k):
    q = torch.randn(b, d, generator=gen)
    codes = make_codes(n, d, dtype, gen)
    scales = torch.rand(n, generator=gen) + 0.5
    bias = torch.randn(n, generator=gen) * 10
    mask_words, rows, allowed = _filter(filt, n, gen)
    qd, cd, sd, bd, md, rd = _on(dev, q, codes, scales, bias, mask_words, rows)
    s, r = linr.ops.scan_topk(qd, cd, k, scales=sd, bias=bd, mask_words=md, rows=rd)
    check_topk(s, r, q, codes, k, scales=scales, bias=bias, allowed=allowed)
    rs, rr = scan_topk_reference(
        q, codes, k, scales=scales, bias=bias, mask_words=mask_words, rows=rows
    )
    assert torch.equal(r.cpu() == -1, rr == -1)


@pytest.mark.parametrize(
    "dtype,mode",
    [
        (torch.int8, MODE_INT8),
        (torch.int8, MODE_FP16),
        (torch.float16, MODE_FP16),
        (torch.float32, MODE_FP32),
    ],
)
@pytest.mark.parametrize("filt", ["none", "mask", "rows"])
@pytest.mark.parametrize("kt,n_splits", [(1, 1), (2, None), (4, 2)])
def test_modes_and_group_completion(gen, dev, dtype, mode, filt, kt, n_splits):
    """Every dot mode, and lane geometry forced so that lane groups must be completed
    (kt=1 with one split flags every group that holds a winner)."""
    b, n, d, k = 4, 600, 48, 25
    q = torch.randn(b, d, generator=gen)
    codes = make_codes(n, d, dtype, gen)
    scales = torch.rand(n, generator=gen) * 2 - 0.5  # some negative scales
    mask_words, rows, allowed = _filter(filt, n, gen, p=0.5)
    n_pos = rows.shape[0] if rows is not None else n
    plan = make_plan(
        b, n_pos, d, k, dtype, torch.device("cpu"), mode=mode, kt=kt, n_splits=n_splits
    )
    stats: dict[str, int] = {}
    qd, cd, sd, md, rd = _on(dev, q, codes, scales, mask_words, rows)
    s, r = run_plan(qd, cd, k, plan, scales=sd, mask_words=md, rows=rd, stats=stats)
    check_topk(s, r, q, codes, k, scales=scales, allowed=allowed)
    assert stats["rescored"] >= b * k
    if kt == 1 and n_splits == 1:
        assert stats["flagged_groups"] > 0


@pytest.mark.parametrize(
    "dtype,mode,kt",
    [(dtype, None, 2) for dtype in DTYPES]
    + [(torch.int8, MODE_INT8, 1)],  # int8 queries: int8 codes
)
def test_exact_ties_go_to_lower_rows(gen, dev, dtype, mode, kt):
    """Integer-valued queries and codes: every score is exact in fp32 and most are tied,
    so the result must equal the reference exactly, tie order included."""
    b, n, d, k = 3, 300, 4, 60
    q = torch.randint(-2, 3, (b, d), generator=gen).float()
    distinct = torch.randint(-2, 3, (12, d), generator=gen)
    codes = distinct[torch.randint(0, 12, (n,), generator=gen)].to(dtype)
    allowed = torch.rand(n, generator=gen) < 0.7
    mask_words = pack_bits(allowed)
    plan = make_plan(b, n, d, k, dtype, torch.device("cpu"), mode=mode, kt=kt, n_splits=2)
    qd, cd, md = _on(dev, q, codes, mask_words)
    s, r = run_plan(qd, cd, k, plan, mask_words=md)
    rs, rr = scan_topk_reference(q, codes, k, mask_words=mask_words)
    assert torch.equal(r.cpu(), rr) and torch.equal(s.cpu(), rs)


def _decoys(q, n, t):
    """n int-valued rows orthogonal to the integer query q (one query): sums of the pair
    vectors q_j e_i - q_i e_j over disjoint coordinate pairs, times t. Their exact scores
    are 0, but their norm (hence the fast dot's error bound) is large."""
    d = q.shape[1]
    qi = q[0].long()
    out = torch.zeros(n, d, dtype=torch.int64)
    for r in range(n):
        perm = torch.randperm(d)
        for a in range(0, d - 1, 2):
            i, j = perm[a], perm[a + 1]
            out[r, i], out[r, j] = t * qi[j], -t * qi[i]
    return out


@pytest.mark.parametrize("dtype,mode", [(torch.float32, MODE_FP32), (torch.int8, MODE_INT8)])
def test_refine_with_loose_bounds(gen, dev, dtype, mode):
    """Decoy rows whose bound beats every winner's while their exact score (0) loses: the
    best 2k by bound are all decoys, so the refinement must go on rescoring (m = 2k, 8k,
    ...) until the next bound drops below the k-th exact score."""
    n_win, n_dec, d, k = 200, 100, 48, 5
    q = torch.randint(-3, 4, (1, d), generator=gen).float()
    q[0, 0] = 3.0  # never all zero
    wins = torch.randint(-1, 2, (n_win, d), generator=gen) * (
        torch.rand(n_win, d, generator=gen) < 0.2
    )
    dec = _decoys(q, n_dec, 40 if dtype == torch.int8 else 10_000)
    codes = torch.cat([wins, dec])[torch.randperm(n_win + n_dec, generator=gen)].to(dtype)
    plan = make_plan(1, n_win + n_dec, d, k, dtype, torch.device("cpu"), mode=mode)
    stats: dict[str, int] = {}
    qd, cd = _on(dev, q, codes)
    s, r = run_plan(qd, cd, k, plan, stats=stats)
    assert stats["refine_rounds"] > 1
    rs, rr = scan_topk_reference(q, codes, k)  # integer data: fp32 scores are exact
    assert torch.equal(r.cpu(), rr) and torch.equal(s.cpu(), rs)


def test_mask_equals_rows_equals_subset(gen, dev):
    """Searching all rows with a filter equals searching only the matching rows (ids
    remapped), whether the filter comes as a mask or as a row list."""
    b, n, d, k = 2, 500, 20, 30
    q = torch.randn(b, d, generator=gen)
    codes = make_codes(n, d, torch.int8, gen)
    scales = torch.rand(n, generator=gen) + 0.1
    mask_words, _, allowed = _filter("mask", n, gen, p=0.1)
    rows = torch.nonzero(allowed).flatten()
    qd, cd, sd, md, rd = _on(dev, q, codes, scales, mask_words, rows)
    s1, r1 = linr.ops.scan_topk(qd, cd, k, scales=sd, mask_words=md)
    s2, r2 = linr.ops.scan_topk(qd, cd, k, scales=sd, rows=rd)
    s3, r3 = linr.ops.scan_topk(qd, cd[rd].contiguous(), k, scales=sd[rd])
    r3 = torch.where(r3 >= 0, rd[r3.clamp(min=0)], -1)
    assert torch.equal(r1, r2) and torch.equal(r1, r3)
    assert torch.equal(s1, s2) and torch.equal(s1, s3)


def test_empty_filters_and_sizes(gen, dev):
    q = torch.randn(2, 7, generator=gen, device="cpu").to(dev)
    codes = make_codes(70, 7, torch.float16, gen).to(dev)
    none = torch.zeros(3, dtype=torch.int32, device=dev)
    for kw in ({"mask_words": none}, {"rows": torch.zeros(0, dtype=torch.int64, device=dev)}):
        s, r = linr.ops.scan_topk(q, codes, 5, **kw)
        assert (r == -1).all() and (s == -torch.inf).all() and s.shape == (2, 5)
    s, r = linr.ops.scan_topk(q, codes[:0], 3)
    assert (r == -1).all() and s.shape == (2, 3)
    s, r = linr.ops.scan_topk(q[:0], codes, 3)
    assert s.shape == (0, 3) and r.shape == (0, 3)


def test_batch_chunks_and_auto_int8_mode(gen, dev):
    """B >= 128 picks the int8-query dot for int8 codes; a forced small query chunk makes
    several passes over the codes."""
    b, n, d, k = 130, 90, 8, 7
    q = torch.randn(b, d, generator=gen)
    codes = make_codes(n, d, torch.int8, gen)
    assert make_plan(b, n, d, k, torch.int8, torch.device("cpu")).mode == MODE_INT8
    qd, cd = _on(dev, q, codes)
    s, r = linr.ops.scan_topk(qd, cd, k)
    check_topk(s, r, q, codes, k)
    plan = make_plan(b, n, d, k, torch.int8, torch.device("cpu"), mode=MODE_FP16)
    plan = type(plan)(**{**plan.__dict__, "query_chunk": 48})
    s2, r2 = run_plan(qd, cd, k, plan)
    check_topk(s2, r2, q, codes, k)


@pytest.mark.parametrize(
    "change,match",
    [
        ({"k": 0}, "k must be"),
        ({"k": 1001}, "k must be"),
        ({"q": torch.randn(2, 5)}, "dimension 5"),
        ({"codes": torch.zeros(10, 4, dtype=torch.int16)}, "codes must be"),
        ({"scales": torch.ones(9)}, r"scales must have shape \[10\]"),
        ({"mask_words": torch.zeros(2, dtype=torch.int64)}, "mask_words must be int32"),
        ({"rows": torch.tensor([3, 2])}, "sorted"),
        ({"rows": torch.tensor([0, 10])}, r"\[0, 10\)"),
        ({"rows": torch.tensor([1]), "mask_words": torch.zeros(1, dtype=torch.int32)}, "exclusive"),
    ],
)
def test_bad_inputs_name_the_problem(change, match):
    args: dict[str, Any] = {"q": torch.randn(2, 4), "codes": torch.randn(10, 4), "k": 3}
    args.update(change)
    q, codes, k = args.pop("q"), args.pop("codes"), args.pop("k")
    with pytest.raises(ValueError, match=match):
        linr.ops.scan_topk(q, codes, k, **args)


def test_available_follows_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert linr.ops.available("cpu")
    monkeypatch.delenv("TRITON_INTERPRET")
    assert not linr.ops.available("cpu")
    assert linr.ops.available("cuda") == torch.cuda.is_available()


def test_gpu_full_size(gen, dev):
    """On a GPU: 1M int8 rows, both dot modes, 1% rows and 30% mask, against float64."""
    if dev.type != "cuda":
        pytest.skip("needs LINR_TEST_GPU=1 on a CUDA machine")
    n, d, k = 1_000_000, 128, 100
    codes = make_codes(n, d, torch.int8, gen)
    scales = torch.rand(n, generator=gen) / 100
    for b, filt, p in [(1, "none", 1.0), (256, "mask", 0.3), (32, "rows", 0.01)]:
        q = torch.randn(b, d, generator=gen)
        mask_words, rows, allowed = _filter(filt, n, gen, p=p)
        qd, cd, sd, md, rd = _on(torch.device("cuda"), q, codes, scales, mask_words, rows)
        s, r = linr.ops.scan_topk(qd, cd, k, scales=sd, mask_words=md, rows=rd)
        check_topk(s, r, q, codes, k, scales=scales, allowed=allowed)
