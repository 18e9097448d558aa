"""How a search runs: the plan (backend and strategy), the chunked CPU/GPU scanner with l2
centring, and the exact top-k selection and merges."""

from linr.search.plan import Backend, Strategy, parse_backend, parse_strategy
from linr.search.scanner import DEFAULT_SCAN_BYTES, Queries, Scanner

__all__ = [
    "DEFAULT_SCAN_BYTES",
    "Backend",
    "Queries",
    "Scanner",
    "Strategy",
    "parse_backend",
    "parse_strategy",
]
