"""The rows of a 1-bit index: packed sign codes and norms on the index's device, and the
rerank store (a plain VectorStore of fp16 / int8 / fp32 vectors) on `rerank_device`.

Per item on the code device: bits / 8 bytes of codes + 4 bytes of norm; the index adds 1
byte of liveness, ids and attributes (README.md, "Capacity"). The rerank store is read
only for the candidates of a search, so it may live in host memory (pinned on a CUDA host,
so the candidates' rows copy to the GPU by DMA).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from linr.errors import InvalidInput
from linr.onebit.transform import SignTransform
from linr.storage import VectorStore, choose_centre

RERANKS = ("fp16", "int8", "fp32", "none")
DEFAULT_SEED = 0x5EED


def check_rerank(rerank: str) -> str:
    if rerank not in RERANKS:
        raise InvalidInput(f"unknown rerank {rerank!r}; expected one of {', '.join(RERANKS)}")
    return rerank


class OneBitStore:
    """Rows [0, capacity) of codes; the same interface as VectorStore for the index."""

    quantization = "1bit"

    def __init__(
        self,
        dim: int,
        metric: str,
        device: torch.device,
        capacity: int,
        bits: int,
        rerank: str,
        rerank_device: torch.device,
        seed: int = DEFAULT_SEED,
        matrix: torch.Tensor | None = None,
    ) -> None:
        self.dim, self.metric, self.device = dim, metric, device
        self.transform = SignTransform(dim, bits, seed, matrix)
        self.bits = bits
        self.rerank = check_rerank(rerank)
        self.rerank_device = rerank_device
        self.codes = torch.zeros((capacity, bits // 8), dtype=torch.uint8, device=device)
        self.norms = torch.zeros(capacity, dtype=torch.float32, device=device)
        # l2: codes and norms are of x - c (c fixed by the first write, as in VectorStore).
        self.centre = torch.zeros(dim, dtype=torch.float32) if metric == "l2" else None
        self.centre_fixed = False
        self.vectors: VectorStore | None = None
        if rerank != "none":
            self.vectors = VectorStore(dim, rerank, rerank_device, capacity, False)
            self._pin()

    @property
    def capacity(self) -> int:
        return int(self.codes.shape[0])

    def _pin(self) -> None:
        """Host rerank tensors of a CUDA index are pinned: candidate rows copy by DMA."""
        vs = self.vectors
        if vs is None or self.rerank_device.type != "cpu" or self.device.type != "cuda":
            return
        vs.codes = vs.codes.pin_memory()
        if vs.scales is not None:
            vs.scales = vs.scales.pin_memory()

    def prepare_grow(self, capacity: int) -> Callable[[], None]:
        if capacity <= self.capacity:
            return lambda: None
        codes = self.codes.new_zeros((capacity, self.codes.shape[1]))
        codes[: self.capacity] = self.codes
        norms = self.norms.new_zeros(capacity)
        norms[: self.capacity] = self.norms
        inner = self.vectors.prepare_grow(capacity) if self.vectors is not None else None

        def install() -> None:
            self.codes, self.norms = codes, norms
            if inner is not None:
                inner()
                self._pin()

        return install

    def centred(self, x: torch.Tensor) -> torch.Tensor:
        """x - c in float64 then float32 (x for ip and cosine)."""
        if self.centre is None:
            return x
        return (x.double() - self.centre.to(x.device).double()).float()

    def write(self, rows: torch.Tensor, x: torch.Tensor) -> None:
        """rows: int64 [n] on the device; x: float32 [n, D] (normalized for cosine)."""
        if self.centre is not None and not self.centre_fixed and x.shape[0]:
            self.centre = choose_centre(x.cpu())
            self.centre_fixed = True
        xc = self.centred(x)
        self.codes[rows] = self.transform.encode(xc).to(self.device)
        self.norms[rows] = xc.double().norm(dim=1).float().to(self.device)
        if self.vectors is not None:
            self.vectors.write(rows.to(self.rerank_device), x.to(self.rerank_device))

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """Rerank vectors of rows (float32, on the code device); NaN without a rerank store:
        the codes keep no vector."""
        if self.vectors is None:
            return torch.full((rows.shape[0], self.dim), torch.nan, device=self.device)
        return self.vectors.gather(rows.to(self.rerank_device)).to(self.device)

    def memory_bytes(self) -> int:
        """Bytes on the code device (codes and norms)."""
        return sum(t.numel() * t.element_size() for t in (self.codes, self.norms))

    def rerank_bytes(self) -> int:
        return 0 if self.vectors is None else self.vectors.memory_bytes()

    def state_dict(self, n_rows: int) -> dict[str, torch.Tensor]:
        out = {
            "codes": self.codes[:n_rows],
            "norms": self.norms[:n_rows],
            "transform": self.transform.matrix,
        }
        if self.centre is not None:
            out["centre"] = self.centre
        if self.vectors is not None:
            for k, v in self.vectors.state_dict(n_rows).items():
                out[f"rerank.{k}"] = v
        return out

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        n = tensors["codes"].shape[0]
        seed = self.transform.seed
        self.transform = SignTransform(self.dim, self.bits, seed, tensors["transform"])
        self.codes[:n] = tensors["codes"].to(self.device)
        self.norms[:n] = tensors["norms"].to(self.device)
        if self.centre is not None:
            self.centre = tensors["centre"].to(torch.float32)
            self.centre_fixed = n > 0
        if self.vectors is not None:
            inner = {k[7:]: v for k, v in tensors.items() if k.startswith("rerank.")}
            self.vectors.load_state(inner)

    def meta(self) -> dict[str, object]:
        """What the manifest records of the codes."""
        return {
            "bits": self.bits,
            "seed": self.transform.seed,
            "transform": self.transform.kind,
            "rerank": self.rerank,
            "rerank_device": str(self.rerank_device),
        }
