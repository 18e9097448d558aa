import threading

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import linr
from linr import FilterError, Index, InvalidInput
from linr.filters import evaluate_reference, parse_filter
from linr.testing.topk import assert_same_topk, scores_by_row


def vecs(rng, n, d=8):
    return rng.standard_normal((n, d)).astype(np.float32)


def test_upsert_replace_delete_visible_to_next_search(rng):
    index = Index(8, capacity=2)
    # Orthonormal rows: under ip each is its own best match (score 1 against 0), which
    # random vectors are not (seed 1422254690 had another row score higher against x[2]).
    x = np.linalg.qr(rng.standard_normal((8, 8)))[0][:5].astype(np.float32)
    res = index.upsert([10, 11, 12, 13, 14], x, [{"lang": "en"}] * 5)
    assert res.created.all() and len(index) == 5
    q = x[2:3]
    assert index.search(q, 1).ids == [[12]]
    res = index.upsert([12], -x[2:3], [{"lang": "fr"}])
    assert not res.created.any() and len(index) == 5
    assert 12 not in index.search(q, 3).ids[0]
    assert index.search(q, 5, 'lang == "fr"').ids == [[12]]
    assert index.delete([12, 99]).tolist() == [True, False]
    assert 12 not in index and len(index) == 4
    assert index.search(q, 5, 'lang == "fr"').ids == [[]]
    # the freed row is reused by the next insert
    rows_before = index.n_rows
    index.upsert([20], x[:1])
    assert index.n_rows == rows_before


def test_get_returns_stored_item(rng):
    index = Index(8, quantization="fp16")
    x = vecs(rng, 1)
    index.upsert(["a"], x, [{"tags": ["x", "y"], "n": 3}])
    item = index.get("a")
    assert item is not None and item.id == "a"
    assert np.allclose(item.vector, x[0], rtol=1e-3, atol=1e-3)  # fp16: 11-bit mantissa
    assert item.attributes["n"] == 3 and set(item.attributes["tags"]) == {"x", "y"}
    assert index.get("b") is None and index.get(1) is None


def test_versions_last_writer_wins(rng):
    index = Index(8)
    x = vecs(rng, 4)
    index.upsert([1], x[:1], versions=[5])
    r = index.upsert([1], x[1:2], versions=[4])  # stale
    assert r.applied.tolist() == [False]
    assert np.allclose(index.get(1).vector, x[0])
    r = index.upsert([1, 1, 1], x[1:4], versions=[7, 6, 8])  # 6 is stale after 7
    assert r.applied.tolist() == [True, False, True]
    assert np.allclose(index.get(1).vector, x[3]) and index.get(1).version == 8
    assert index.delete([1], versions=[3]).tolist() == [False]
    assert index.delete([1], versions=[9]).tolist() == [True]


def test_duplicate_ids_in_a_batch_last_wins(rng):
    index = Index(8)
    x = vecs(rng, 3)
    r = index.upsert([4, 4, 4], x)
    assert len(index) == 1 and np.allclose(index.get(4).vector, x[2])
    assert r.created.sum() == 1


def test_duplicate_ids_infer_field_kinds_as_one_by_one(rng):
    """New fields get the kinds that writing the batch's items one by one would give, even
    where the write that fixed a kind is overwritten in the same batch."""
    x = vecs(rng, 2)
    batched = Index(8)
    batched.upsert([4, 4], x, [{"x": 1.5, "y": "a"}, {"x": 1}])
    single = Index(8)
    for i in range(2):
        single.upsert([4], x[i : i + 1], [[{"x": 1.5, "y": "a"}, {"x": 1}][i]])
    assert batched.schema == single.schema == {"x": "float", "y": "keyword"}
    assert batched.get(4).attributes == single.get(4).attributes == {"x": 1.0}
    assert batched.search(x[:1], 1, "x == 1").ids == [[4]]


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda i, x: i.upsert([1], x[:, :7]), "expects"),
        (lambda i, x: i.upsert([1], np.full((1, 8), np.nan, np.float32)), "NaN"),
        (lambda i, x: i.upsert([1], np.full((1, 8), np.inf, np.float32)), "infinite"),
        (lambda i, x: i.upsert([1, 2], x), "2 ids"),
        (lambda i, x: i.upsert(["s"], x), "int ids"),
        (lambda i, x: i.upsert([1], x, [{"lang": 3}]), "lang"),
        (lambda i, x: i.search(x[:, :3], 1), "expects"),
        (lambda i, x: i.search(x, 0), "k must be"),
        (lambda i, x: i.search(np.full((1, 8), np.nan, np.float32), 1), "NaN"),
    ],
)
def test_bad_input_is_rejected_and_changes_nothing(rng, call, match):
    index = Index(8)
    index.upsert([7], vecs(rng, 1), [{"lang": "en"}])
    before = index.search(np.ones((1, 8), np.float32), 5)
    with pytest.raises(InvalidInput, match=match):
        call(index, vecs(rng, 1))
    after = index.search(np.ones((1, 8), np.float32), 5)
    assert before.ids == after.ids and len(index) == 1


def test_half_bad_batch_is_not_half_applied(rng):
    index = Index(8)
    with pytest.raises(InvalidInput):
        index.upsert([1, 2], vecs(rng, 2), [{"a": 1}, {"a": "x"}])
    assert len(index) == 0 and "a" not in index.schema


@pytest.mark.parametrize(
    "flt,match",
    [
        ("nope == 1", "nope"),
        ('lang == "en" and', "position"),
        ("lang >= 3", "lang"),
        ({"field": "lang", "bogus": 1}, "bogus"),
    ],
)
def test_bad_filters(rng, flt, match):
    index = Index(8)
    index.upsert([1], vecs(rng, 1), [{"lang": "en"}])
    with pytest.raises(FilterError, match=match):
        index.search(vecs(rng, 1), 3, flt)


@pytest.mark.parametrize("quant", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_save_load_round_trip_is_bit_identical(tmp_path, rng, quant, metric):
    index = Index(12, metric, quant, "cpu")
    n = 300
    index.upsert(
        [f"id{i}" for i in range(n)],
        vecs(rng, n, 12),
        [{"c": int(i % 5), "t": ["a", "b"][i % 2], "f": i / 7} for i in range(n)],
        versions=list(range(n)),
    )
    index.delete([f"id{i}" for i in range(0, n, 9)])
    index.save(tmp_path / "idx", extra={"offsets": {"0": 42}})
    loaded = Index.load(tmp_path / "idx", device="cpu")
    assert linr.read_manifest(tmp_path / "idx")["extra"] == {"offsets": {"0": 42}}
    assert loaded.manifest_extra == {"offsets": {"0": 42}}
    assert len(loaded) == len(index) and loaded.schema == index.schema
    q = vecs(rng, 7, 12)
    for f in (None, 'c >= 2 and t == "a"', "f < 10"):
        a, b = index.search(q, 20, f), loaded.search(q, 20, f)
        assert a.ids == b.ids and np.array_equal(a.scores, b.scores)
    item_a, item_b = index.get("id5"), loaded.get("id5")
    assert item_a.attributes == item_b.attributes and np.array_equal(item_a.vector, item_b.vector)
    assert item_b.version == 5
    # the loaded index keeps working: new items, reused rows
    loaded.upsert(["new"], vecs(rng, 1, 12))
    assert "new" in loaded and len(loaded) == len(index) + 1


def test_load_rejects_non_index(tmp_path):
    with pytest.raises(InvalidInput, match="manifest.json"):
        Index.load(tmp_path)


def test_capacity_grows_while_searching(rng):
    index = Index(8, capacity=1)
    stop = threading.Event()
    errors: list[BaseException] = []

    def searcher():
        try:
            while not stop.is_set():
                res = index.search(np.ones((2, 8), np.float32), 5)
                assert all(len(set(ids)) == len(ids) for ids in res.ids)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=searcher)
    t.start()
    for start in range(0, 2000, 100):
        index.upsert(np.arange(start, start + 100), vecs(rng, 100))
    stop.set()
    t.join()
    assert not errors and len(index) == 2000 and index.capacity >= 2000


# ---- the oracle property: filtered search == exact search over only the matching items ----
attr_values = st.fixed_dictionaries(
    {},
    optional={
        "lang": st.sampled_from(["en", "fr", "de", "ja"]),
        "tags": st.lists(st.sampled_from(["ml", "gpu", "db", "web", "ai"]), max_size=3),
        "ts": st.integers(0, 20),
        "score": st.floats(-5, 5, allow_nan=False),
        "live": st.booleans(),
    },
)
leaf = st.one_of(
    st.builds(lambda v: {"field": "lang", "eq": v}, st.sampled_from(["en", "fr", "xx"])),
    st.builds(
        lambda v: {"field": "tags", "in": v},
        st.lists(st.sampled_from(["ml", "gpu", "db", "zz"]), min_size=1, max_size=3),
    ),
    st.builds(
        lambda v: {"field": "tags", "all": v},
        st.lists(st.sampled_from(["ml", "gpu", "db"]), min_size=1, max_size=2),
    ),
    st.builds(
        lambda a, b: {"field": "ts", "gte": a, "lt": b}, st.integers(0, 20), st.integers(0, 25)
    ),
    st.builds(lambda a: {"field": "score", "gt": a}, st.floats(-5, 5)),
    st.builds(lambda v: {"field": "live", "eq": v}, st.booleans()),
    st.builds(
        lambda f: {"field": f, "exists": True},
        st.sampled_from(["lang", "tags", "ts", "score", "live"]),
    ),
)
filters = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.builds(lambda fs: {"and": fs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda fs: {"or": fs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda f: {"not": f}, inner),
    ),
    max_leaves=6,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.lists(attr_values, min_size=1, max_size=60),
    flt=filters,
    k=st.integers(1, 70),
    quant=st.sampled_from(["fp32", "int8"]),
    strategy=st.sampled_from(["auto", "mask", "gather"]),
    seed=st.integers(0, 2**31),
)
def test_filtered_search_equals_search_over_matching_subset(items, flt, k, quant, strategy, seed):
    rng = np.random.default_rng(seed)
    n, d = len(items), 6
    x = rng.standard_normal((n, d)).astype(np.float32)
    schema = {"lang": "keyword", "tags": "keyword", "ts": "int", "score": "float", "live": "bool"}
    index = Index(d, "ip", quant, "cpu", schema=schema)
    index.upsert(np.arange(n) * 3, x, items)
    q = rng.standard_normal((2, d)).astype(np.float32)
    res = index.search(q, k, flt, strategy=strategy)
    node = parse_filter(flt)
    match = np.array([evaluate_reference(node, it) for it in items])
    sub = np.nonzero(match)[0]
    stored = index.stored_vectors(torch.arange(n)).numpy()
    sub_s, sub_i = linr.knn(q, stored[sub], len(sub))  # every match, ranked
    rows = np.where(sub_i >= 0, sub[sub_i.clamp(min=0)], -1)  # back to the index's rows
    pad = np.full((2, max(k - len(sub), 0)), -1)
    want_rows = np.concatenate([rows, pad], 1)[:, :k]
    want_s = np.concatenate([sub_s.numpy(), np.where(pad < 0, -np.inf, 0)], 1)[:, :k]
    # Rows are ids / 3. The fp32 scan sums D products, the float64 reference is exact:
    # apart by at most D * 2^-24 * sum |q_i x_i|, so items closer than that may swap.
    atol = d * 2.0**-24 * float((np.abs(q) @ np.abs(stored).T).max())
    every = scores_by_row(sub_s, rows, n)
    assert_same_topk(res.rows, res.scores, want_rows, want_s, 0.0, atol, every)
    assert res.ids == [[int(r) * 3 for r in row if r >= 0] for row in res.rows]


def test_values_that_overflow_storage_are_rejected(rng):
    with pytest.raises(InvalidInput, match="fp16 range"):
        Index(2, quantization="fp16").upsert([1], np.array([[1e5, 0]], np.float32))
    with pytest.raises(InvalidInput, match="squared norm"):
        Index(2, metric="l2").upsert([1], np.array([[3e19, 0]], np.float32))
    with pytest.raises(InvalidInput, match="all zeros"):
        Index(2, metric="cosine").upsert([1], np.zeros((1, 2), np.float32))
    tiny = Index(2, metric="cosine")
    tiny.upsert([1], np.array([[1e-30, 0]], np.float32))  # normalizes in float64
    assert np.allclose(tiny.get(1).vector, [1, 0])
    with pytest.raises(InvalidInput, match="numbers"):
        Index(2).upsert([1], [["a", "b"]])
    with pytest.raises(InvalidInput, match="k must be"):
        Index(2).search(np.ones(2, np.float32), 10**12)


def _search_within(index, seconds, *args):
    """index.search(*args) on another thread; None if it did not finish in time."""
    out = []
    t = threading.Thread(target=lambda: out.append(index.search(*args)), daemon=True)
    t.start()
    t.join(seconds)
    return out[0] if out else None


def test_save_lets_searches_run_and_holds_back_writers(tmp_path, rng, monkeypatch):
    """While `save` writes (held here on an event, as a slow disk would), searches complete;
    an upsert waits for it, so the saved index is the state from before that upsert."""
    import safetensors.torch

    index = Index(16, "ip", "fp32", "cpu")
    x = rng.standard_normal((300, 16)).astype(np.float32)
    index.upsert(np.arange(300), x)
    writing, release = threading.Event(), threading.Event()
    real = safetensors.torch.save_file

    def slow_save_file(tensors, filename, *a, **kw):
        writing.set()
        assert release.wait(30)
        return real(tensors, filename, *a, **kw)

    monkeypatch.setattr(safetensors.torch, "save_file", slow_save_file)
    saver = threading.Thread(target=index.save, args=(tmp_path / "snap",))
    saver.start()
    assert writing.wait(30)
    res = _search_within(index, 10.0, x[:3], 1)  # None if save held `lock`
    if res is None:
        release.set()
    assert res is not None and len(res.ids) == 3
    upserted = threading.Event()

    def write():
        index.upsert([1000], np.ones((1, 16), np.float32))
        upserted.set()

    writer = threading.Thread(target=write)
    writer.start()
    assert not upserted.wait(0.3)  # the writer waits for the save
    release.set()
    saver.join(30)
    writer.join(30)
    assert upserted.is_set() and 1000 in index
    saved = Index.load(tmp_path / "snap")
    assert len(saved) == 300 and 1000 not in saved


def test_a_bad_batch_is_rejected_without_waiting_for_searches(rng):
    """Validation runs before the write takes `lock`: with `lock` held elsewhere (a long
    search, say), a bad batch is still refused at once."""
    index = Index(8, "ip", "fp32", "cpu")
    index.upsert([1], rng.standard_normal((1, 8)).astype(np.float32))
    errors: list[Exception] = []

    def bad_write():
        try:
            index.upsert([2], np.full((1, 8), np.nan, np.float32))
        except InvalidInput as e:
            errors.append(e)

    with index.lock:
        t = threading.Thread(target=bad_write)
        t.start()
        t.join(10)
        assert not t.is_alive() and len(errors) == 1
    assert 2 not in index


def test_growth_copies_without_blocking_searches(rng, monkeypatch):
    """Growing copies every row; it runs holding only `write_lock`, and the copies are
    swapped in under `lock`. Here the copy is held on an event: searches complete meanwhile
    and see the old rows, and after it every item, attributes included, is intact."""
    from linr.storage import VectorStore

    index = Index(8, "ip", "fp32", "cpu", capacity=64)
    x = vecs(rng, 64)
    index.upsert(np.arange(64), x, [{"lang": ["en", "fr"][i % 2], "ts": i} for i in range(64)])
    before = index.search(x[:4], 5, 'lang == "en"')
    copying, release = threading.Event(), threading.Event()
    real = VectorStore.prepare_grow

    def slow_prepare_grow(self, capacity):
        install = real(self, capacity)
        copying.set()
        assert release.wait(30)
        return install

    monkeypatch.setattr(VectorStore, "prepare_grow", slow_prepare_grow)
    y = vecs(rng, 100)
    writer = threading.Thread(
        target=index.upsert,
        args=(np.arange(64, 164), y, [{"lang": "en", "ts": 1000 + i} for i in range(100)]),
    )
    writer.start()
    assert copying.wait(30)
    during = _search_within(index, 10.0, x[:4], 5, 'lang == "en"')  # None: growth held `lock`
    if during is None:
        release.set()
    assert during is not None and during.ids == before.ids and len(index) == 64
    release.set()
    writer.join(30)
    assert not writer.is_alive() and len(index) == 164 and index.capacity >= 164
    for i in (0, 1, 63, 64, 163):
        want = {"lang": ["en", "fr"][i % 2], "ts": i} if i < 64 else {"lang": "en", "ts": 936 + i}
        item = index.get(i)
        assert item is not None and item.attributes == want
    both = np.concatenate([x, y])
    ref_s, ref = linr.knn(x[:4], both, 5, "ip")
    got = index.search(x[:4], 5)
    # fp32 (8 products summed) vs float64: within 8 * 2^-24 * sum |q_i x_i|.
    atol = 8 * 2.0**-24 * float((np.abs(x[:4]) @ np.abs(both).T).max())
    assert_same_topk(got.ids, got.scores, ref.numpy(), ref_s.numpy(), 0.0, atol)
