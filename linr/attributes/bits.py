"""Per-row bits packed into int64 words on the device: LiNR's attribute bitmaps.

Layout is word-major, `words[w, row]`, holding bits 64*w .. 64*w + 63 of a row, so that
testing a bit reads one contiguous [capacity] int64 column, and adding a word (new values
appearing) appends a row of the tensor without copying the others. Bits hold presence
flags of every field, bool values, "given as a list" flags and the values of
low-cardinality keyword fields.
"""

from __future__ import annotations

import numpy as np
import torch

_ONE = np.uint64(1)


def _signed(mask: int) -> int:
    """A 64-bit pattern as the int64 scalar torch needs (bit 63 is the sign bit)."""
    return mask - (1 << 64) if mask >= 1 << 63 else mask


def group_by_word(bits: list[int]) -> dict[int, int]:
    """{word: mask of the given bits in that word}."""
    out: dict[int, int] = {}
    for b in bits:
        out[b >> 6] = out.get(b >> 6, 0) | (1 << (b & 63))
    return out


class BitWords:
    def __init__(self, capacity: int, device: torch.device) -> None:
        self.device = device
        self.words = torch.zeros((0, capacity), dtype=torch.int64, device=device)
        self.n_bits = 0  # bits handed out so far (some may be free again)
        self.free: list[int] = []  # released bits, zero in every row, reused first

    @property
    def capacity(self) -> int:
        return int(self.words.shape[1])

    def alloc(self) -> int:
        if self.free:
            self.free.sort()
            return self.free.pop(0)
        bit = self.n_bits
        self.n_bits += 1
        if bit >> 6 >= self.words.shape[0]:
            extra = torch.zeros((1, self.capacity), dtype=torch.int64, device=self.device)
            self.words = torch.cat([self.words, extra])
        return bit

    def release(self, bits: list[int]) -> None:
        """Zero these bits in every row and make them available to `alloc` again."""
        for w, m in group_by_word(bits).items():
            self.words[w] &= _signed(~m & ((1 << 64) - 1))
        self.free.extend(bits)

    def grown(self, capacity: int) -> torch.Tensor:
        """The words with rows up to `capacity` (new rows zero); self is unchanged."""
        extra = capacity - self.capacity
        if extra <= 0:
            return self.words
        pad = torch.zeros((self.words.shape[0], extra), dtype=torch.int64, device=self.device)
        return torch.cat([self.words, pad], dim=1)

    def clear_rows(self, rows: torch.Tensor) -> None:
        self.words[:, rows] = 0

    def set_rows(self, rows: torch.Tensor, items: np.ndarray, bits: np.ndarray) -> None:
        """Overwrite every word of rows[i] with the bits b where (i, b) is in zip(items, bits).

        rows: int64 [n] on the device; items, bits: int64 [m] (pairs need not be unique).
        """
        n = int(rows.shape[0])
        new = np.zeros((self.words.shape[0], n), dtype=np.uint64)
        if bits.size:
            vals = np.left_shift(_ONE, (bits & 63).astype(np.uint64))
            np.bitwise_or.at(new, (bits >> 6, items), vals)
        self.words[:, rows] = torch.from_numpy(new.view(np.int64)).to(self.device)

    def test(self, bit: int, n: int) -> torch.Tensor:
        """bool [n]: rows with this bit set."""
        w = bit >> 6
        return (self.words[w, :n] & _signed(1 << (bit & 63))) != 0

    def test_any(self, bits: list[int], n: int) -> torch.Tensor:
        """bool [n]: rows with at least one of the bits set."""
        out: torch.Tensor | None = None
        for w, m in group_by_word(bits).items():
            hit = (self.words[w, :n] & _signed(m)) != 0
            out = hit if out is None else out | hit
        return out if out is not None else torch.zeros(n, dtype=torch.bool, device=self.device)

    def test_all(self, bits: list[int], n: int) -> torch.Tensor:
        """bool [n]: rows with every one of the bits set."""
        out: torch.Tensor | None = None
        for w, m in group_by_word(bits).items():
            sm = _signed(m)
            hit = (self.words[w, :n] & sm) == sm
            out = hit if out is None else out & hit
        return out if out is not None else torch.ones(n, dtype=torch.bool, device=self.device)

    def nbytes(self) -> int:
        return self.words.numel() * self.words.element_size()
