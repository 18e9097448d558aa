"""fused_scan.py's kernel (through the CPU interpreter) against the per-lane reference.

The kernel writes, for every (query, split, lane), its best KT positions ranked by an upper
bound of the exact score. Checked here: the layout (each position sits in its own lane
group), only allowed rows, the bound property (value >= exact score, and not loose), and
completeness (no position left out of a group scores above the group's KT-th value), which
is what topk_search.py's exactness rests on; plus positions equal to the float64
reference's wherever its order is unambiguous.
"""

import pytest
import torch
from ops_helpers import exact64, make_codes, pack_bits

pytest.importorskip("triton")

from linr.ops.fused_scan import (  # noqa: E402
    MODE_FP16,
    MODE_FP32,
    MODE_INT8,
    code_norms,
    prepare_queries,
    scan_partial,
    scan_partial_reference,
)

_MODES = {
    torch.float32: [MODE_FP32],
    torch.float16: [MODE_FP16],
    torch.int8: [MODE_FP16, MODE_INT8],
}
_CASES = [(dt, m) for dt, modes in _MODES.items() for m in modes]


@pytest.mark.parametrize("dtype,mode", _CASES)
@pytest.mark.parametrize("filt", ["none", "mask", "rows"])
@pytest.mark.parametrize(
    "b,n,d,kt,n_splits", [(1, 300, 130, 2, 2), (17, 129, 1, 4, 3), (3, 64, 40, 1, 1)]
)
def test_scan_partial_lane_topk(gen, dev, dtype, mode, filt, b, n, d, kt, n_splits):
    block_n = 16
    q = torch.randn(b, d, generator=gen)
    codes = make_codes(n, d, dtype, gen)
    scales = torch.rand(n, generator=gen) + 0.5
    bias = torch.randn(n, generator=gen)
    allowed = torch.ones(n, dtype=torch.bool)
    mask_words = rows = None
    if filt == "mask":
        allowed = torch.rand(n, generator=gen) < 0.4
        mask_words = pack_bits(allowed)
    elif filt == "rows":
        allowed = torch.rand(n, generator=gen) < 0.4
        rows = torch.nonzero(allowed).flatten()
    n_pos = rows.shape[0] if rows is not None else n
    n_tiles = max(1, -(-n_pos // block_n))
    tps = -(-n_tiles // n_splits)
    n_splits = -(-n_tiles // tps)

    def on(t):
        return None if t is None else t.to(dev)

    v, p = scan_partial(
        on(q),
        on(codes),
        scales=on(scales),
        bias=on(bias),
        mask_words=on(mask_words),
        rows=on(rows),
        mode=mode,
        kt=kt,
        # As the planner does past one query block: norms computed once, read by position.
        norms=on(code_norms(codes, rows)) if b > 16 else None,
        n_splits=n_splits,
        tiles_per_split=tps,
        block_b=16,
        block_n=block_n,
        block_d=32,
    )
    v, p = v.cpu().view(b, n_splits, kt, block_n), p.cpu().view(b, n_splits, kt, block_n).long()
    ex = exact64(q, codes, scales, bias)
    if rows is not None:
        ex_pos = ex[:, rows]  # scores by position
        pos_allowed = torch.ones(n_pos, dtype=torch.bool)
    else:
        ex_pos = ex
        pos_allowed = allowed
    # Bound looseness allowed: twice the kernel's own error term (A_b ||c|| |s| + rounding).
    _, _, qerr = prepare_queries(q, mode)
    cn = codes.double().norm(dim=1) * scales.double().abs()
    if rows is not None:
        cn = cn[rows]
    slack = 2 * qerr.double()[:, None] * cn[None, :] + 1e-5 * (ex_pos.abs() + bias.abs().max())
    group = torch.arange(n_splits)[:, None] * tps * block_n + torch.arange(block_n)[None, :]
    for i in range(b):
        for sp in range(n_splits):
            for ln in range(block_n):
                members = group[sp, ln] + torch.arange(tps) * block_n
                members = members[members < n_pos]
                members = members[pos_allowed[members]]
                vals, poss = v[i, sp, :, ln], p[i, sp, :, ln]
                cnt = min(kt, members.numel())
                assert (poss[cnt:] == -1).all() and (vals[cnt:] == -torch.inf).all()
                got = poss[:cnt]
                assert torch.isin(got, members).all() and torch.unique(got).numel() == cnt
                assert (vals[:cnt].double() >= ex_pos[i, got]).all(), "not an upper bound"
                assert (vals[:cnt].double() - ex_pos[i, got] <= slack[i, got]).all(), "loose"
                assert cnt == 0 or (vals[: cnt - 1] >= vals[1:cnt]).all()
                if cnt == kt:
                    rest = members[~torch.isin(members, got)]
                    assert (ex_pos[i, rest] <= vals[kt - 1].double()).all(), "incomplete"
    # Against the reference: same positions wherever the exact order is unambiguous.
    rv, rp = scan_partial_reference(
        q,
        codes,
        scales=scales,
        bias=bias,
        mask_words=mask_words,
        rows=rows,
        kt=kt,
        n_splits=n_splits,
        tiles_per_split=tps,
        block_n=block_n,
    )
    rv, rp = rv.view_as(v), rp.view_as(p)
    assert torch.equal(rp == -1, p == -1)
    both = rp >= 0
    agree = (rp == p) | ~both
    # Disagreement is allowed only between near-equal exact scores.
    if not agree.all():
        idx = torch.nonzero(~agree)
        for i, sp, j, ln in idx.tolist():
            a = ex_pos[i, p[i, sp, j, ln]]
            r = ex_pos[i, rp[i, sp, j, ln]]
            assert abs(float(a - r)) <= 2 * float(slack[i].max()), "positions differ"
