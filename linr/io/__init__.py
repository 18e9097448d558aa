"""Reading and writing the files users bring: vectors, ids, attributes, filters, results.

Formats are those of the contract's "Command line" section; see docs/cli.md.
"""

from linr.io.ibin import read_ibin, write_ibin
from linr.io.items import ItemBatch, count_lines, iter_item_batches, read_ids
from linr.io.jsonl import iter_attributes_jsonl, iter_json_lines, read_filters_jsonl
from linr.io.vectors import (
    VECTOR_SUFFIXES,
    iter_vector_chunks,
    read_vectors,
    read_vectors_lazy,
    vector_file_shape,
    vector_format,
    write_fbin,
    write_fvecs,
)

__all__ = [
    "VECTOR_SUFFIXES",
    "ItemBatch",
    "count_lines",
    "iter_attributes_jsonl",
    "iter_item_batches",
    "iter_json_lines",
    "iter_vector_chunks",
    "read_filters_jsonl",
    "read_ibin",
    "read_ids",
    "read_vectors",
    "read_vectors_lazy",
    "vector_file_shape",
    "vector_format",
    "write_fbin",
    "write_fvecs",
    "write_ibin",
]
