"""Seeded sign transforms: the codes of quantization="1bit" (LiNR's Sign-OPORP).

Sign-OPORP (one permutation + one random projection): permute the D coordinates, multiply
them by a fixed random +-1 vector, sum them within `bits` equal bins (bin of the j-th
permuted coordinate: j * bits // D) and keep the signs. That is a linear map followed by
a sign, so the whole transform is one [D, bits] matrix W and code = (x @ W > 0).

With one coordinate per bin (bits >= D) OPORP's signs would be the coordinates' own signs,
which estimate the angle badly on anisotropic data. So from bits = D on, every block of D
bits gets its own seeded random rotation before its OPORP step ("rotated-sign-oporp"):
the blocks are independent projections, and the last block may be shorter (then it bins).

Bit j of a code lives in byte j // 8 at bit j % 8 (numpy's bitorder="little"), so viewing
the bytes as little-endian uint64 puts it in word j // 64 at bit j % 64.

The matrix is generated once from the seed and saved with the index (not regenerated on
load: a LAPACK elsewhere could round the QR differently), so an upsert after a load is
encoded exactly as before it, and no item is ever re-encoded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from linr.errors import InvalidInput

KIND_OPORP = "sign-oporp"
KIND_ROTATED = "rotated-sign-oporp"
WORD_BITS = 64


def default_bits(dim: int) -> int:
    """The dimension rounded up to a multiple of 64."""
    return -(-dim // WORD_BITS) * WORD_BITS


def check_bits(bits: object, dim: int) -> int:
    if bits is None:
        return default_bits(dim)
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or int(bits) < 1:
        raise InvalidInput(f"bits must be a positive multiple of 64, got {bits!r}")
    if int(bits) % WORD_BITS:
        raise InvalidInput(f"bits must be a multiple of 64, got {bits}")
    return int(bits)


def transform_kind(dim: int, bits: int) -> str:
    return KIND_OPORP if bits < dim else KIND_ROTATED


@dataclass(frozen=True)
class BlockParams:
    """One block of OPORP bits: y = (R x)[perm] * signs, code_i = sum of y_j with bin j = i."""

    rotation: np.ndarray | None  # float64 [D, D] orthogonal, or None (plain OPORP)
    perm: np.ndarray  # int64 [D]
    signs: np.ndarray  # float64 [D] of +-1
    n_bits: int


def block_params(dim: int, bits: int, seed: int) -> list[BlockParams]:
    """The transform's random parts, drawn from numpy's PCG64 seeded with `seed`."""
    rng = np.random.default_rng(seed)
    rotate = transform_kind(dim, bits) == KIND_ROTATED
    blocks = []
    for b0 in range(0, bits, dim if rotate else bits):
        rot = None
        if rotate:
            # Haar-distributed rotation: QR of a Gaussian matrix, columns' signs fixed by R.
            q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
            rot = q * np.sign(np.diag(r))[None, :]
        perm = rng.permutation(dim).astype(np.int64)
        signs = rng.integers(0, 2, dim).astype(np.float64) * 2.0 - 1.0
        blocks.append(BlockParams(rot, perm, signs, min(bits - b0, dim if rotate else bits)))
    return blocks


def bins_of(dim: int, n_bits: int) -> np.ndarray:
    """Bin of each permuted coordinate: equal bins (sizes differ by at most one)."""
    return np.arange(dim, dtype=np.int64) * n_bits // dim


def transform_matrix(dim: int, bits: int, seed: int) -> np.ndarray:
    """float64 [D, bits]: the linear part of the whole transform, code = (x @ W > 0)."""
    cols = []
    for blk in block_params(dim, bits, seed):
        a = np.eye(dim) if blk.rotation is None else blk.rotation  # y = a @ x
        a = a[blk.perm] * blk.signs[:, None]
        m = np.zeros((blk.n_bits, dim))
        np.add.at(m, bins_of(dim, blk.n_bits), a)
        cols.append(m.T)
    return np.ascontiguousarray(np.concatenate(cols, axis=1))


class SignTransform:
    """The saved transform of a 1-bit index: encode() turns float vectors into packed codes."""

    def __init__(self, dim: int, bits: int, seed: int, matrix: torch.Tensor | None = None):
        self.dim, self.bits, self.seed = dim, bits, int(seed)
        self.kind = transform_kind(dim, bits)
        if matrix is None:
            matrix = torch.from_numpy(transform_matrix(dim, bits, self.seed))
        if tuple(matrix.shape) != (dim, bits):
            raise InvalidInput(
                f"saved transform has shape {tuple(matrix.shape)}; expected {(dim, bits)}"
            )
        # Kept on the host: encoding is host work (float64, see encode).
        self.matrix = matrix.to("cpu", torch.float64).contiguous()
        self.matrix32 = self.matrix.float()
        self.col_norms32 = self.matrix.norm(dim=0).float()  # [bits]

    @property
    def code_bytes(self) -> int:
        return self.bits // 8

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """float [n, D] -> uint8 [n, bits / 8] packed signs: the signs of x @ W in float64.

        Computed in float32 (twice as fast), then rows holding a projection within the
        float32 error bound of zero are recomputed in float64. Bound: x is float32, W
        rounds once to float32, and the D-term sum rounds at most D times, so
        |y32 - y| <= (D + 2) 2**-24 sum_i |x_i w_i| <= (D + 2) 2**-24 ||x|| ||w||; doubled
        for room. Elsewhere sign(y32) = sign(y) = sign(y64) (float64 errs ~1e-16 of it)."""
        xc = x.detach().to("cpu")
        if xc.dtype != torch.float32:  # float64 input: no float32 shortcut is exact
            return pack_signs(xc.double() @ self.matrix > 0)
        y = xc @ self.matrix32
        # The bound itself in float32: its few roundings are covered by the factor 2.
        bound = (2.0 * (self.dim + 2) * 2.0**-24) * xc.norm(dim=1, keepdim=True)
        near = (y.abs() <= bound * self.col_norms32[None, :]).any(1)
        pos = y > 0
        if bool(near.any()):
            redo = torch.nonzero(near).flatten()
            pos[redo] = xc[redo].double() @ self.matrix > 0
        return pack_signs(pos)


def pack_signs(positive: torch.Tensor) -> torch.Tensor:
    """bool [n, bits] -> uint8 [n, bits / 8], bit j in byte j // 8 at bit j % 8."""
    packed = np.packbits(positive.numpy(), axis=1, bitorder="little")
    return torch.from_numpy(packed.reshape(positive.shape[0], positive.shape[1] // 8))


def encode_reference(x: np.ndarray, dim: int, bits: int, seed: int) -> np.ndarray:
    """Plain numpy version of SignTransform.encode, step by step as the module docstring
    describes (rotate, permute, multiply by signs, sum within bins, sign, pack)."""
    x = np.asarray(x, np.float64)
    out = []
    for blk in block_params(dim, bits, seed):
        y = x if blk.rotation is None else x @ blk.rotation.T
        y = y[:, blk.perm] * blk.signs[None, :]
        sums = np.zeros((x.shape[0], blk.n_bits))
        for j, b in enumerate(bins_of(dim, blk.n_bits)):
            sums[:, b] += y[:, j]
        out.append(sums > 0)
    positive = np.concatenate(out, axis=1)
    return np.packbits(positive, axis=1, bitorder="little")
