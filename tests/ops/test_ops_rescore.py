"""rescore.py (Triton, through the CPU interpreter) against its float64 reference."""

import pytest
import torch
from ops_helpers import U, make_codes

pytest.importorskip("triton")

from linr.ops.rescore import rescore, rescore_reference  # noqa: E402


@pytest.mark.parametrize("dtype", [torch.int8, torch.float16, torch.float32])
@pytest.mark.parametrize("n_pairs,d", [(1, 1), (45, 130), (70, 64)])
@pytest.mark.parametrize("affine", [False, True])
def test_rescore_matches_reference(gen, dev, dtype, n_pairs, d, affine):
    b, n = 5, 40
    q = torch.randn(b, d, generator=gen)
    codes = make_codes(n, d, dtype, gen)
    scales = torch.rand(n, generator=gen) * 2 - 0.5 if affine else None
    bias = torch.randn(n, generator=gen) if affine else None
    pq = torch.randint(0, b, (n_pairs,), generator=gen)
    pr = torch.randint(0, n, (n_pairs,), generator=gen)
    want = rescore_reference(q, codes, pq, pr, scales, bias)

    def on(t):
        return None if t is None else t.to(dev)

    got = rescore(on(q), on(codes), on(pq), on(pr), on(scales), on(bias)).cpu()
    # fp32 products summed over D: error <= (D + 2) u sum|q_i c_i| |scale| (+ 2 u for the
    # scale and bias steps), doubled for room.
    mag = (q[pq].double().abs() * codes[pr].double().abs()).sum(1)
    if scales is not None:
        mag = mag * scales[pr].double().abs()
    tol = 2 * ((d + 2) * U * mag + 2 * U * (want.abs() + 1))
    assert ((got.double() - want).abs() <= tol).all()


def test_rescore_empty(dev):
    q = torch.randn(2, 3, device=dev)
    codes = torch.randn(4, 3, device=dev)
    e = torch.zeros(0, dtype=torch.int64, device=dev)
    assert rescore(q, codes, e, e).shape == (0,)
