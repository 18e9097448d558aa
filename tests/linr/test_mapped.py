"""linr.io.mapped reads what safetensors wrote, and its tensors are private copies-on-write."""

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from linr import Index
from linr.io.mapped import map_safetensors


def test_mapped_equals_loaded(tmp_path, rng):
    tensors = {
        "f32": torch.from_numpy(rng.standard_normal((7, 3)).astype(np.float32)),
        "f16": torch.from_numpy(rng.standard_normal(5).astype(np.float16)),
        "i8": torch.from_numpy(rng.integers(-127, 128, (3, 5)).astype(np.int8)),
        "i64": torch.arange(11),
        "b": torch.tensor([True, False, True]),
        "bf16": torch.ones(3, dtype=torch.bfloat16),  # no numpy dtype: read by safetensors
        "empty": torch.zeros((0, 4)),
    }
    path = tmp_path / "t.safetensors"
    save_file(tensors, str(path))
    want, got = load_file(str(path)), map_safetensors(path)
    assert set(got) == set(want)
    for name, t in want.items():
        assert got[name].dtype == t.dtype and torch.equal(got[name], t), name
    got["f32"][0, 0] = 123.0  # copy-on-write: the file keeps its value
    assert load_file(str(path))["f32"][0, 0] == tensors["f32"][0, 0]


def test_index_loaded_mapped_searches_and_writes(tmp_path, rng):
    x = rng.standard_normal((40, 6)).astype(np.float32)
    index = Index(6, "ip", "fp32", "cpu", capacity=40)
    index.upsert(np.arange(40), x, [{"g": i % 2} for i in range(40)])
    index.save(tmp_path / "idx")
    q = rng.standard_normal((3, 6)).astype(np.float32)
    a = index.search(q, 5, "g == 1")
    mapped = Index.load(tmp_path / "idx", "cpu", mmap=True)
    b = mapped.search(q, 5, "g == 1")
    assert a.ids == b.ids
    mapped.upsert([0], 100 * q[:1], [{"g": 1}])  # the mapping is private: the file is intact
    assert mapped.search(q[:1], 1, "g == 1").ids == [[0]]
    assert Index.load(tmp_path / "idx", "cpu").search(q, 5, "g == 1").ids == a.ids
