"""One attribute field's bookkeeping: its kind, its bits and where its values live."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from linr.attributes.postings import Postings

DTYPES = {"int": torch.int64, "float": torch.float64}


@dataclass
class Field:
    name: str
    kind: str
    present_bit: int
    flag_bit: int = -1  # keyword: the value was given as a list; bool: the value is true
    values: list[str] = field(default_factory=list)  # keyword vocabulary: id -> value
    vocab: dict[str, int] = field(default_factory=dict)  # value -> id
    value_bits: list[int] = field(default_factory=list)  # keyword as bitmap: id -> bit
    postings: Postings | None = None  # keyword as postings
    column: torch.Tensor | None = None  # int64 / float64 [capacity] (int, float)
    vocab_bytes: int = 0  # estimate of the vocabulary's host memory
