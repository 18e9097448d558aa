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
        # ||x||^2 of the stored (decoded) vector, for l2 = 2<q,x> - ||x||^2 - ||q||^2.
        self.sqnorms = (
            torch.zeros(capacity, dtype=torch.float32, device=device) if with_norms else None
        )

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

        return install

    def write(self, rows: torch.Tensor, x: torch.Tensor) -> None:
        """rows: int64 [n] on the device; x: float32 [n, D] (already normalized for cosine)."""
        codes, scales = encode(x, self.quantization)
        self.codes[rows] = codes
        if self.scales is not None and scales is not None:
            self.scales[rows] = scales
        if self.sqnorms is not None:
            self.sqnorms[rows] = decode(codes, scales).square().sum(1)

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
        return out

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        n = tensors["codes"].shape[0]
        self.codes[:n] = tensors["codes"].to(self.device)
        if self.scales is not None:
            self.scales[:n] = tensors["scales"].to(self.device)
        if self.sqnorms is not None:
            self.sqnorms[:n] = tensors["sqnorms"].to(self.device)
