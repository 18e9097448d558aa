"""quantization="1bit": Sign-OPORP codes, a Hamming-estimate scan, an exact rerank.

    index = Index(128, quantization="1bit", bits=512, rerank="fp16", rerank_device="cpu")
    index.search(queries, k=10, oversample=20)

transform.py (the seeded codes), estimate.py (what the codes estimate; the plain
reference), store.py (codes, norms, rerank store), cpu_scan.py and linr.ops.hamming (the
scans), search.py (candidates + rerank). README.md, "1-bit codes", has the capacity table.
"""

from linr.onebit.search import DEFAULT_OVERSAMPLE, OneBitScanner, check_oversample
from linr.onebit.store import RERANKS, OneBitStore, check_rerank
from linr.onebit.transform import SignTransform, check_bits, default_bits

__all__ = [
    "DEFAULT_OVERSAMPLE",
    "RERANKS",
    "OneBitScanner",
    "OneBitStore",
    "SignTransform",
    "check_bits",
    "check_oversample",
    "check_rerank",
    "default_bits",
]
