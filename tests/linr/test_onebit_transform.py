"""The codes of quantization 1bit against a plain numpy version of the transform."""

import numpy as np
import pytest
import torch

from linr.errors import InvalidInput
from linr.onebit.transform import (
    KIND_OPORP,
    KIND_ROTATED,
    SignTransform,
    check_bits,
    default_bits,
    encode_reference,
)


@pytest.mark.parametrize(
    "dim,bits",
    [(128, 64), (300, 128), (40, 64), (100, 128), (128, 512), (7, 64), (1, 64), (384, 1536)],
)
def test_codes_equal_numpy_reference(rng, dim, bits):
    seed = int(rng.integers(0, 2**31))
    x = rng.standard_normal((37, dim)) * rng.uniform(0.1, 10, (37, 1))
    tr = SignTransform(dim, bits, seed)
    # A projection within ~1e-16 ||x|| of zero could land on either side in the two
    # summation orders: for Gaussian data that has probability ~1e-15 per bit.
    want = encode_reference(x, dim, bits, seed)
    got = tr.encode(torch.from_numpy(x)).numpy()  # float64 input: float64 all the way
    np.testing.assert_array_equal(got, want)
    x32 = x.astype(np.float32)  # float32 input: float32 product, float64 near zero
    got = tr.encode(torch.from_numpy(x32)).numpy()
    np.testing.assert_array_equal(got, encode_reference(x32, dim, bits, seed))
    assert got.shape == (37, bits // 8) and got.dtype == np.uint8
    assert tr.kind == (KIND_OPORP if bits < dim else KIND_ROTATED)


def test_float32_path_recomputes_projections_near_zero(rng):
    """Vectors built to sit almost on a projection's zero: float32 alone would get some
    signs wrong; the recomputed rows must match float64 exactly."""
    dim, bits = 64, 128
    tr = SignTransform(dim, bits, 5)
    w = tr.matrix.numpy()
    x = rng.standard_normal((200, dim))
    j = rng.integers(0, bits, 200)
    wj = w[:, j].T  # [200, D]
    x -= (np.sum(x * wj, 1) / np.sum(wj * wj, 1))[:, None] * wj  # x . w_j = 0
    x += wj * rng.choice([-1, 1], (200, 1)) * 1e-9  # then a hair off it, either side
    x32 = x.astype(np.float32)
    got = tr.encode(torch.from_numpy(x32)).numpy()
    np.testing.assert_array_equal(got, encode_reference(x32, dim, bits, 5))


def test_oporp_is_permute_sign_bin_sum():
    """bits < D: literal OPORP (no rotation): a vector with one nonzero coordinate sets
    exactly the bin it falls in, by the sign the transform gives that coordinate."""
    dim, bits = 256, 64
    tr = SignTransform(dim, bits, 7)
    w = tr.matrix.numpy()
    assert ((w != 0).sum(1) == 1).all()  # each coordinate lands in exactly one bin
    assert set(np.unique(np.abs(w[w != 0]))) == {1.0}
    assert ((w != 0).sum(0) == dim // bits).all()  # equal bins


def test_bits_beyond_dim_mix_coordinates(rng):
    """bits >= D: the blocks are rotated, so a code is not the coordinates' signs, and
    the blocks differ."""
    dim = 64
    tr = SignTransform(dim, 256, 3)
    w = tr.matrix.numpy()
    assert (np.abs(w) > 0).sum(0).min() > dim // 2  # dense columns: mixed coordinates
    blocks = w.T.reshape(4, dim, dim)
    for i in range(4):
        np.testing.assert_allclose(blocks[i] @ blocks[i].T, np.eye(dim), atol=1e-12)
        for j in range(i):
            assert np.abs(blocks[i] @ blocks[j].T).max() < 0.9  # independent rotations


def test_seed_fixes_the_codes(rng):
    x = torch.from_numpy(rng.standard_normal((5, 50)))
    a, b = SignTransform(50, 128, 1), SignTransform(50, 128, 1)
    assert torch.equal(a.encode(x), b.encode(x))
    assert not torch.equal(a.encode(x), SignTransform(50, 128, 2).encode(x))


def test_bits_checks():
    assert default_bits(1) == 64 and default_bits(64) == 64 and default_bits(65) == 128
    assert check_bits(None, 384) == 384
    for bad in (0, 63, 100, -64, 64.0, True, "64"):
        with pytest.raises(InvalidInput, match="bits"):
            check_bits(bad, 128)


def test_zero_vector_has_no_set_bits():
    tr = SignTransform(16, 64, 0)
    assert int(tr.encode(torch.zeros(2, 16)).sum()) == 0
