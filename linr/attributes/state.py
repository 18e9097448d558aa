"""AttributeStore <-> (tensors for safetensors, JSON-able meta), an exact round trip.

Vocabularies go into tensors (UTF-8 bytes + offsets) rather than the JSON meta: a 200k-tag
vocabulary would otherwise make the manifest several MB of JSON. Posting lists are saved as
each row's value ids (compacted, stale entries dropped) and rebuilt on load.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from linr.attributes.bits import BitWords
from linr.attributes.field import DTYPES, Field
from linr.attributes.postings import Postings

if TYPE_CHECKING:
    from linr.attributes.store import AttributeStore

FORMAT = 1


def _encode_vocab(values: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    # surrogatepass: JSON may carry lone surrogates ("\ud800"); keep them byte-exact
    raw = [s.encode("utf-8", "surrogatepass") for s in values]
    offsets = np.zeros(len(raw) + 1, np.int64)
    np.cumsum([len(b) for b in raw], out=offsets[1:])
    blob = np.frombuffer(b"".join(raw), np.uint8).copy()
    return torch.from_numpy(blob), torch.from_numpy(offsets)


def _decode_vocab(blob: torch.Tensor, offsets: torch.Tensor) -> list[str]:
    data = blob.cpu().numpy().tobytes()
    off = offsets.cpu().tolist()
    return [data[a:b].decode("utf-8", "surrogatepass") for a, b in zip(off[:-1], off[1:])]


def store_state(store: AttributeStore) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    cap = store.capacity
    tensors: dict[str, torch.Tensor] = {"words": store.bits.words.cpu().contiguous()}
    fields_meta = []
    for name, f in store.fields.items():
        fields_meta.append(
            {
                "name": name,
                "kind": f.kind,
                "present_bit": f.present_bit,
                "flag_bit": f.flag_bit,
                "storage": store.storage_of(name),
                "value_bits": f.value_bits,
            }
        )
        if f.column is not None:
            tensors[f"col.{name}"] = f.column[:cap].cpu().contiguous()
        if f.kind == "keyword":
            blob, offsets = _encode_vocab(f.values)
            tensors[f"vocab.{name}.bytes"] = blob
            tensors[f"vocab.{name}.offsets"] = offsets
        if f.postings is not None:
            row_len, values = f.postings.row_values()
            tensors[f"post.{name}.row_len"] = torch.from_numpy(row_len)
            tensors[f"post.{name}.values"] = torch.from_numpy(values.astype(np.int32))
    meta = {
        "format": FORMAT,
        "capacity": cap,
        "bitmap_max_values": store.bitmap_max_values,
        "fields_indexed": None if store.indexed_fields is None else sorted(store.indexed_fields),
        "n_bits": store.bits.n_bits,
        "free_bits": sorted(store.bits.free),
        "fields": fields_meta,
    }
    return tensors, meta


def load_state(
    cls: type[AttributeStore],
    tensors: Mapping[str, torch.Tensor],
    meta: Mapping[str, Any],
    device: torch.device | str,
) -> AttributeStore:
    if meta.get("format") != FORMAT:
        raise ValueError(f"attribute state has format {meta.get('format')!r}, expected {FORMAT}")
    dev = torch.device(device)
    cap = int(meta["capacity"])
    gen = np.zeros(cap, np.uint32)
    bits = BitWords(cap, dev)
    bits.words = tensors["words"].to(dev, torch.int64).clone()
    if tuple(bits.words.shape) != (-(-int(meta["n_bits"]) // 64), cap):
        raise ValueError(
            f"attribute words have shape {tuple(bits.words.shape)}, "
            f"expected {meta['n_bits']} bits x {cap} rows"
        )
    bits.n_bits = int(meta["n_bits"])
    bits.free = list(meta["free_bits"])
    fields = []
    for fm in meta["fields"]:
        name, kind = fm["name"], fm["kind"]
        f = Field(name, kind, int(fm["present_bit"]), int(fm["flag_bit"]))
        if kind in DTYPES:
            f.column = tensors[f"col.{name}"].to(dev, DTYPES[kind]).clone()
        if kind == "keyword":
            f.values = _decode_vocab(
                tensors[f"vocab.{name}.bytes"], tensors[f"vocab.{name}.offsets"]
            )
            f.vocab = {s: i for i, s in enumerate(f.values)}
            f.vocab_bytes = sum(100 + len(s) for s in f.values)
            f.value_bits = [int(b) for b in fm["value_bits"]]
        if fm["storage"] == "postings":
            row_len = tensors[f"post.{name}.row_len"].cpu().numpy().astype(np.int32)
            values = tensors[f"post.{name}.values"].cpu().numpy().astype(np.int32)
            f.postings = Postings.from_row_values(row_len, values, len(f.values), gen)
        fields.append(f)
    return cls.from_parts(
        dev,
        indexed_fields=meta["fields_indexed"],
        bitmap_max_values=meta["bitmap_max_values"],
        bits=bits,
        generations=gen,
        fields=fields,
    )
