"""Reading and writing the files users bring: vectors, ids, attributes, filters, results,
and the benchmark datasets `linr eval` reads. One reader per format, each raising
InvalidInput naming the file and what is wrong; see docs/cli.md and docs/eval.md.
"""

from linr.io.ibin import read_ibin, write_ibin
from linr.io.items import ItemBatch, count_lines, iter_item_batches, read_ids
from linr.io.jsonl import iter_attributes_jsonl, iter_json_lines, read_filters_jsonl
from linr.io.source import VectorSource, open_vectors, read_ground_truth
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
    "VectorSource",
    "count_lines",
    "iter_attributes_jsonl",
    "iter_item_batches",
    "iter_json_lines",
    "iter_vector_chunks",
    "open_vectors",
    "read_filters_jsonl",
    "read_ground_truth",
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
