"""The embedding rows of an index: codes (+ int8 scales, + squared norms for l2) as tensors."""

from __future__ import annotations

from collections.abc import Callable

import torch

from linr.quantization import CODE_DTYPES, decode, encode


class VectorStore:
    """Rows [0, capacity) of codes on one device. Row contents are meaningless unless the index
    marks the row valid; the store itself knows nothing of ids or deletes."""

    def __init__(
        self, dim: int, quantization: str, device: torch.device, capacity: int, with_norms: bool
    ) -> None:
        self.dim = dim
        self.quantization = quantization
        self.device = device
        self.with_norms = with_norms
        self.codes = torch.zeros((capacity, dim), dtype=CODE_DTYPES[quantization], device=device)
        self.scales = (
            torch.zeros(capacity, dtype=torch.float32, device=device)
            if quantization == "int8"
            else None
        )
        # l2: ||x - c||^2 of the stored (decoded) vector, for the centre c below; the scan
        # (linr/search/scanner.py) scores 2<q - c, x> - ||x - c||^2, then subtracts
        # ||q||^2 - ||c||^2.
        self.sqnorms = (
            torch.zeros(capacity, dtype=torch.float32, device=device) if with_norms else None
        )
        # Fixed by the first write (choose_centre) and never moved, since every norm depends
        # on it. Zero for data near the origin, where it would change nothing.
        self.centre = torch.zeros(dim, dtype=torch.float32, device=device) if with_norms else None
        self.centre_fixed = False
        # Rises with every change of the rows: what is derived from them (linr.cpu.batch's
        # scan order) is kept until it moves.
        self.generation = 0

    @property
    def capacity(self) -> int:
        return int(self.codes.shape[0])

    def prepare_grow(self, capacity: int) -> Callable[[], None]:
        """Build the grown tensors now (the slow part: allocation and copy) and return what
        installs them. Reads only: the caller keeps writes out until it installs."""
        if capacity <= self.capacity:
            return lambda: None

        def _grow(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            out = t.new_zeros((capacity, *t.shape[1:]))
            out[: t.shape[0]] = t
            return out

        codes, scales, sqnorms = _grow(self.codes), _grow(self.scales), _grow(self.sqnorms)

        def install() -> None:
            assert codes is not None
            self.codes, self.scales, self.sqnorms = codes, scales, sqnorms
            self.generation += 1

        return install

    def write(self, rows: torch.Tensor, x: torch.Tensor) -> None:
        """rows: int64 [n] on the device; x: float32 [n, D] (already normalized for cosine)."""
        codes, scales = encode(x, self.quantization)
        self.generation += 1  # before and after: a failed write leaves no stale scan order
        if self.centre is not None and not self.centre_fixed and x.shape[0]:
            self.centre = choose_centre(x)
            self.centre_fixed = True
        self.codes[rows] = codes
        if self.scales is not None and scales is not None:
            self.scales[rows] = scales
        if self.sqnorms is not None:
            self.sqnorms[rows] = self.centred_sqnorms(decode(codes, scales))
        self.generation += 1

    def centred_sqnorms(self, x: torch.Tensor) -> torch.Tensor:
        """||x - c||^2 per row, summed in float64: these are exact inputs of every score."""
        assert self.centre is not None
        return (x.double() - self.centre.double()).square().sum(1).float()

    def block(self, r0: int, r1: int) -> torch.Tensor:
        """Decoded float32 rows [r0, r1): a view for fp32 (no copy), a fresh tensor otherwise."""
        scales = None if self.scales is None else self.scales[r0:r1]
        return decode(self.codes[r0:r1], scales)

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """Decoded float32 rows at the given positions."""
        scales = None if self.scales is None else self.scales[rows]
        return decode(self.codes[rows], scales)

    def memory_bytes(self) -> int:
        tensors = [self.codes, self.scales, self.sqnorms]
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)

    def state_dict(self, n_rows: int) -> dict[str, torch.Tensor]:
        out = {"codes": self.codes[:n_rows]}
        if self.scales is not None:
            out["scales"] = self.scales[:n_rows]
        if self.sqnorms is not None:
            out["sqnorms"] = self.sqnorms[:n_rows]
        if self.centre is not None:
            out["centre"] = self.centre
        return out

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        n = tensors["codes"].shape[0]
        codes = tensors["codes"]
        if n == self.capacity and codes.dtype == self.codes.dtype and codes.device == self.device:
            self.codes = codes  # a full store: take the loaded tensor rather than copy it
        else:
            self.codes[:n] = codes.to(self.device)
        if self.scales is not None:
            self.scales[:n] = tensors["scales"].to(self.device)
        if self.sqnorms is not None:
            self.sqnorms[:n] = tensors["sqnorms"].to(self.device)
        if self.centre is not None:
            # Saved before centring existed: its norms are ||x||^2, that is, c = 0.
            if "centre" in tensors:
                self.centre = tensors["centre"].to(self.device, torch.float32)
            self.centre_fixed = n > 0 or "centre" in tensors
        self.generation += 1


def choose_centre(x: torch.Tensor) -> torch.Tensor:
    """The l2 centre for an index whose first vectors are x [n, D]: their mean when it lies
    farther from the origin than the vectors lie from it, else zero.

    Why: l2 is scored from inner products and squared norms, whose float32 rounding grows
    with ||x||^2, while the distances that rank neighbours grow only with the spread. At an
    offset of 1,000 on standard normal data (D = 128) uncentred recall@10 was 0.025
    (benchmarks/bench_l2_offset.py). Centred, the scores round at the scale of |<q - c, c>|.
    Data near the origin keeps c = 0: nothing changes for it."""
    x64 = x.double()
    m = x64.mean(0)
    spread = (x64 - m).square().sum(1).mean()  # 0 for a single vector: it is the centre
    if float(m.square().sum()) <= float(spread):
        return torch.zeros(x.shape[1], dtype=torch.float32, device=x.device)
    return m.float()
