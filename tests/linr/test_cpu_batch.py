"""The CPU batch path (linr.cpu.batch) against the float64 reference and its plain twin."""

import numpy as np
import pytest
import torch

from linr import Index
from linr.cpu import batch, small
from linr.search.scanner import Queries, Scanner
from linr.storage import VectorStore
from linr.testing.topk import assert_same_topk, scores_by_row
from tests.linr.conftest import check_filtered_search, index_reference

SCREEN_PAYS = batch._screen_pays


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Blocks of ~2^14 entries (a few hundred rows here) so that small sets take this path
    and span many blocks; every Index.search below is checked to have come through it."""
    monkeypatch.setattr(batch, "_BLOCK_ENTRIES", 1 << 14)
    monkeypatch.setattr(batch, "_MIN_BLOCKS", 0)
    monkeypatch.setattr(batch, "_MIN_ROWS", 0)
    monkeypatch.setattr(batch, "_MERGE_MIN", 64)  # lazy merges and prunes, often
    monkeypatch.setattr(batch, "_PRUNE_MIN", 256)
    monkeypatch.setattr(batch, "_WARM_SHARE", 2)  # int8: half the blocks warm T up first
    calls = []
    search = batch.search
    monkeypatch.setattr(batch, "search", lambda *a: calls.append(1) or search(*a))
    return calls


@pytest.fixture(autouse=True, params=["screen", "float"])
def screen(request, monkeypatch):
    """Every test twice: fp32 and fp16 rows screened with int8 products (batch._screens)
    from 17 queries on, and scored in float throughout."""
    monkeypatch.setattr(batch, "_SCREEN_MIN_BATCH", 17 if request.param == "screen" else 1 << 30)
    monkeypatch.setattr(batch, "_screen_pays", lambda d, b, threads: True)
    return request.param


def test_screen_is_measured_once_per_shape():
    """Whether the screen pays is timed on this machine, once per (dimension, batch)."""
    pays = SCREEN_PAYS  # the fixture above stands in for it elsewhere
    pays.cache_clear()
    got = pays(24, 256, 2)
    assert isinstance(got, bool) and pays(24, 256, 2) is got
    assert pays.cache_info().hits == 1


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
@pytest.mark.parametrize("quant", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize(
    "n,d,b,k",
    # one row; k above the rows; a dimension and row counts off every block and group
    # (_GROUP = 32); 480 rows per block at b = 33, 64 at b = 200.
    [(1, 3, 17, 1), (40, 5, 18, 64), (3001, 37, 33, 13), (12007, 16, 200, 100)],
)
@pytest.mark.parametrize("frac", [1.0, 0.6, 0.05, 0.0])
def test_batches_equal_reference(rng, small_blocks, metric, quant, n, d, b, k, frac):
    """Through Index.search (auto) at every selectivity, the empty filter included, against
    the float64 reference (conftest.check_filtered_search: its tolerance covers D <= 37);
    fp16 codes are exact in float32."""
    assert b > small.MAX_BATCH
    allow = check_filtered_search(rng, metric, quant, n, d, b, k, frac)
    # a filter that allows no live row needs no scan
    assert len(small_blocks) == int(allow[1:].any()) + int(n > 1)


def _store(rng, n, d, quant, metric, b, spread):
    """A store with rows of very different norms (spread: log-normal factor), so the
    per-row terms of the bounds (scale, squared norm) vary across a group."""
    x = rng.standard_normal((n, d)) * np.exp(spread * rng.standard_normal((n, 1)))
    x = torch.from_numpy(x.astype(np.float32))
    store = VectorStore(d, quant, torch.device("cpu"), n, metric == "l2")
    store.write(torch.arange(n), x)
    qs = Queries(q=torch.from_numpy(rng.standard_normal((b, d)).astype(np.float32)), batch=b)
    if metric == "l2":
        qs = Scanner(store, metric)._l2_queries(qs)
    return store, qs


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("quant", ["fp32", "int8"])
@pytest.mark.parametrize("spread", [0.0, 1.5])
def test_search_equals_plain_twin(rng, metric, quant, spread):
    """Ids equal those of batch.reference (one float32 product over the decoded rows) but
    where two scores are within float32 summation error (1e-4 of these magnitudes), with
    rows listed and not, and spiky and zero queries (int8 query rounding at its coarsest)."""
    n, d, b, k = 9000, 19, 24, 40
    store, qs = _store(rng, n, d, quant, metric, b, spread)
    qs.q[1, 0] = 1e3
    qs.q[2] = 0.0
    codes = store.codes.clone()
    for rows in (None, torch.from_numpy(np.flatnonzero(rng.random(n) < 0.4))):
        got_s, got_r = batch.search(store, metric, qs, k, n, rows)
        assert torch.equal(store.codes, codes)  # the screen rounds copies of the rows
        ref_s, ref_r = batch.reference(store, metric, qs, k, n, rows)
        scale = ref_s.abs().amax(1, keepdim=True).clamp(min=1)
        assert torch.allclose(got_s, ref_s, rtol=0, atol=1e-4 * float(scale.max()))
        same = got_r == ref_r
        # a differing id must sit in a near-tie: its reference score matches ours
        assert torch.all(same | ((got_s - ref_s).abs() <= 1e-4 * scale)), (~same).sum()


@pytest.mark.parametrize("quant", ["fp32", "int8", "fp16"])
@pytest.mark.parametrize("b", [1, 20])  # linr.cpu.small (fp16: the blocked scan); this path
def test_equal_vectors_keep_ascending_rows(quant, b):
    n = 3001  # not a multiple of any block or group: tail rows score like the others
    x = np.tile(np.array([[1, 2, 3, 4, 5]], np.float32), (n, 1))
    x[::7] *= 2
    index = Index(5, "ip", quant, "cpu")
    index.upsert(np.arange(n), x, [{"g": i % 3} for i in range(n)])
    top = list(range(0, n, 7))
    rest = [r for r in range(n) if r % 7]
    q = np.ones((b, 5), np.float32)
    res = index.search(q, 600)
    assert all(r.tolist() == (top + rest)[:600] for r in res.rows)
    res = index.search(q, 60, "g == 1")
    want = sorted([r for r in range(n) if r % 3 == 1], key=lambda r: (r % 7 != 0, r))[:60]
    assert all(r.tolist() == want for r in res.rows)


def test_switch_off_and_few_rows_take_the_blocked_scan(rng, small_blocks, monkeypatch):
    """LINR_CPU_BATCH=off, or fewer allowed rows than _MIN_BLOCKS blocks: the blocked scan
    of linr/search/scanner.py, same results."""
    index = Index(8, "ip", "fp32", "cpu")
    x = rng.standard_normal((500, 8)).astype(np.float32)
    index.upsert(np.arange(500), x)
    q = rng.standard_normal((20, 8)).astype(np.float32)
    on = index.search(q, 7)
    assert len(small_blocks) == 1
    monkeypatch.setenv("LINR_CPU_BATCH", "off")
    off = index.search(q, 7)
    monkeypatch.delenv("LINR_CPU_BATCH")
    monkeypatch.setattr(batch, "_MIN_BLOCKS", 2)  # 500 rows: 1.4 blocks of 352 rows
    few = index.search(q, 7)
    assert len(small_blocks) == 1
    assert np.array_equal(on.rows, off.rows) and np.array_equal(on.rows, few.rows)


def _brute(x, q, metric, k, rows):
    """float64 top k over rows by (score desc, row asc)."""
    xs = x[rows].astype(np.float64)
    s = q.astype(np.float64) @ xs.T
    if metric == "l2":
        s = 2 * s - (xs**2).sum(1)[None] - (q.astype(np.float64) ** 2).sum(1)[:, None]
    out_s = np.full((q.shape[0], k), -np.inf)
    out_r = np.full((q.shape[0], k), -1)
    for b in range(q.shape[0]):
        order = np.lexsort((rows, -s[b]))[:k]
        out_s[b, : len(order)] = s[b, order]
        out_r[b, : len(order)] = rows[order]
    return out_s, out_r


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("quant", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("n,d,b,k", [(1500, 8, 17, 5), (2003, 6, 40, 60), (700, 4, 33, 1000)])
@pytest.mark.parametrize("frac", [1.0, 0.3])
def test_exact_on_integer_data(rng, metric, quant, n, d, b, k, frac):
    """Small integers (and int8 scales that are powers of two): every float32 sum is exact
    whatever its order, so ids and scores must equal a float64 brute force bit for bit, with
    heavy ties (3 values per coordinate), zero rows, a zero query, l2 with the centre at 0,
    and k above the allowed rows (700 rows, k = 1000)."""
    base = rng.choice([-1.0, 0.0, 1.0], size=(n, d))
    if quant == "int8":
        base[:, 0] = 127 * rng.choice([-1, 1], n)  # amax 127: scale = 2^j exactly
        x = base * 2.0 ** rng.integers(-3, 4, n)[:, None]
        x[rng.random(n) < 0.05] = 0  # zero-scale rows
    else:
        x = base
    x = x.astype(np.float32)
    store = VectorStore(d, quant, torch.device("cpu"), n, metric == "l2")
    store.centre_fixed = True  # centre 0: l2 scores are exact too
    store.write(torch.arange(n), torch.from_numpy(x))
    q = rng.choice([-1.0, 0.0, 1.0], size=(b, d)).astype(np.float32)
    q[0] = 0  # ties every row
    if quant == "int8":
        q[1 : b // 2, 0] = 127
    qs = Queries(q=torch.from_numpy(q), batch=b)
    if metric == "l2":
        qs = Scanner(store, metric)._l2_queries(qs)
    allowed = np.flatnonzero(rng.random(n) < frac) if frac < 1 else np.arange(n)
    got_s, got_r = batch.search(
        store, metric, qs, k, n, None if frac == 1 else torch.from_numpy(allowed)
    )
    ref_s, ref_r = _brute(x, q, metric, k, allowed)
    assert np.array_equal(got_r.numpy(), ref_r)
    assert np.array_equal(got_s.numpy().astype(np.float64), ref_s)


@pytest.mark.parametrize("quant", ["fp32", "fp16"])
def test_overflowed_scores_are_kept(quant):
    """Scores that overflow float32 to +inf (finite inputs) rank first, as in the blocked
    scan: the k-th bound at +inf must not turn into NaN (inf - inf)."""
    big = 1e20 if quant == "fp32" else 6e4
    x = np.ones((900, 4), np.float32)
    x[[5, 600]] = big
    index = Index(4, "ip", quant, "cpu")
    index.upsert(np.arange(900), x)
    q = np.full((20, 4), 1e20 if quant == "fp32" else 3e34, np.float32)
    res = index.search(q, 2)
    assert (res.rows == [[5, 600]]).all() and np.isposinf(res.scores).all()


@pytest.mark.parametrize("quant", ["fp32", "int8"])
def test_scores_at_minus_inf_pad_as_the_blocked_scan(monkeypatch, quant):
    """Rows whose scores overflow to -inf, with k above the finite ones: the same rows and
    scores as the blocked scan (a -inf score comes back as row -1)."""
    x = np.ones((900, 4), np.float32)
    x[[5, 600]] = -1e20 if quant == "fp32" else -1e30
    index = Index(4, "ip", quant, "cpu")
    index.upsert(np.arange(900), x)
    q = np.full((20, 4), 1e20, np.float32)
    got = index.search(q, 900)
    monkeypatch.setenv("LINR_CPU_BATCH", "off")
    want = index.search(q, 900)
    assert np.array_equal(got.rows, want.rows) and np.array_equal(got.scores, want.scores)
    assert (got.rows[:, -2:] == -1).all() and np.isneginf(got.scores[:, -2:]).all()


def test_warm_up_rows_are_not_counted_twice(small_blocks, screen, monkeypatch):
    """The warm-up's sample (block 0 among them) sets T from its rows' bounds, and the scan
    then leaves those rows' bounds out: counted again, row 0 (the best) would make T its
    own bound at k = 2, and the second best, at the other end of the rows, would be lost.
    Screened fp32 rows, each with max |x_i| = 100 so that every group's scales are equal
    and the bounds tight; without the screen (float products) there is no warm-up."""
    n, d, b = 20000, 8, 40
    x = np.full((n, d), 0.01, np.float32)
    x[:, 0] = -100.0
    x[0], x[n - 1] = 100.0, 50.0
    x[n - 1, 0] = 100.0
    index = Index(d, "ip", "fp32", "cpu")
    index.upsert(np.arange(n), x)
    samples = []
    warm = batch._warm_up
    monkeypatch.setattr(batch, "_warm_up", lambda *a: samples.append(warm(*a)) or samples[-1])
    res = index.search(np.ones((b, d), np.float32), 2)
    assert small_blocks and len(samples) == 1
    assert len(samples[0]) == 0 if screen == "float" else 0 in samples[0] and len(samples[0]) > 1
    assert all(r.tolist() == [0, n - 1] for r in res.rows)


@pytest.mark.parametrize("quant", ["fp32", "int8"])
@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_scan_order_is_kept_until_a_write(rng, small_blocks, quant, metric):
    """The scan order (rows sorted by scale or norm, group extremes) is built once per store
    and rows, and built again after a write: the second search reuses it, the third sees
    the rewritten rows."""
    n, d, b, k = 5000, 12, 30, 7
    index = Index(d, metric, quant, "cpu")
    x = rng.standard_normal((n, d)).astype(np.float32)
    index.upsert(np.arange(n), x)
    q = rng.standard_normal((b, d)).astype(np.float32)
    index.search(q, k)
    first = batch._LAYOUTS[index._store]
    index.search(q, k)
    assert batch._LAYOUTS[index._store] is first
    x[rng.integers(0, n, 50)] *= 40.0  # new scales and norms for some rows
    index.upsert(np.arange(n), x, [{"g": i % 3} for i in range(n)])
    for f in (None, "g != 1"):  # a filter's rows come from the mask cache: the same tensor
        res = index.search(q, k, f)
        assert batch._LAYOUTS[index._store] is not first  # other rows or a write
        first = batch._LAYOUTS[index._store]
        again = batch._LAYOUTS[index._store]
        index.search(q, k, f)
        assert batch._LAYOUTS[index._store] is again
        m = torch.from_numpy(np.arange(n) % 3 != 1) if f else torch.ones(n, dtype=torch.bool)
        ref_s, ref_i = index_reference(index, q, k, metric, m)
        full = scores_by_row(*index_reference(index, q, n, metric, m), n)
        assert_same_topk(res.rows, res.scores, ref_i.numpy(), ref_s.numpy(), 1e-4, 1e-4, full)


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_thresholds_pass_every_product_whose_bound_reaches_t(rng, metric):
    """batch._thresholds against the bounds it stands for, in float64: every integer
    product P whose bound s * (a * P + e) (l2: 2 * that - sqn - const + slack) reaches t for
    some s in [smin, smax] and sqn >= sqmin is at least its threshold, per query and per
    entry (q); also where the l2 terms (squared norms, const) are up to 10^9 times the
    product terms s * (a * P + e) (cancellation), t is +-inf, and scales are zero. Tight:
    at the range's ends a threshold is within 2 (and 10^-6 of P) of P."""
    b = 4000
    a = torch.from_numpy(10.0 ** rng.uniform(-6, 0, b))
    e = torch.from_numpy(10.0 ** rng.uniform(-3, 3, b)) * a
    const = torch.from_numpy(rng.standard_normal(b) * 10.0 ** rng.integers(0, 10, b))
    if metric == "ip":
        const = torch.zeros(b, dtype=torch.float64)
    slack = 2.0**-18 * const.abs()
    model = batch._Model(True, False, metric == "l2", a, e, const, slack, e)
    smin = torch.from_numpy(10.0 ** rng.uniform(-4, 0, b))
    smin[:100] = 0.0  # zero rows in the group
    smax = smin * torch.from_numpy(rng.uniform(1, 3, b))
    smax[:50] = torch.from_numpy(rng.uniform(1e-4, 1, 50))
    sqmin = torch.from_numpy(rng.uniform(0, 4, b)) * const.abs()
    p = torch.from_numpy(rng.integers(-(2**20), 2**20, b)).double()
    # half the entries at the extremes, where the threshold is tight
    edge = torch.from_numpy(rng.random(b) < 0.5)
    s = smin + (smax - smin) * torch.from_numpy(rng.random(b))
    s = torch.where(edge, torch.where(p * a + e >= 0, smax, smin), s)
    sqn = torch.where(edge, sqmin, sqmin * (1 + torch.from_numpy(rng.random(b))))
    x = (p * a + e) * s
    score = 2 * x - sqn - (const - slack) if metric == "l2" else x
    sq = sqmin if metric == "l2" else 0.0
    for t in (score, score - 1e-12 * score.abs(), torch.full((b,), -torch.inf)):
        thr = batch._thresholds(model, t, smax, smin, sq)
        reach = score >= t
        assert torch.all(p[reach] >= thr[reach].double())
    # tight: at the extremes, no more than 2 below P, past l2's widening (2^-40 of the
    # magnitudes, in units of P, and the float64 rounding of `score` itself)
    thr = batch._thresholds(model, score, smax, smin, sq).double()
    tight = edge & (smin > 0)
    widen = 0.0
    if metric == "l2":
        widen = (2.0**-40 + 2.0**-48) * (score.abs() + sqmin + const.abs() + slack) / (smin * a)
    below = (p - thr - widen)[tight]
    assert torch.all(below <= 2 + 1e-6 * p[tight].abs())
    # per entry: the model's terms of queries q, extremes as floats (the block's)
    q = torch.from_numpy(rng.integers(100, b, 300))  # rows with scales > 0
    lo, hi, sqf = float(smin[100:].min()), float(smax[100:].max()), float(sqmin.min())
    t = score.index_select(0, q)
    thr = batch._thresholds(model, t, hi, lo, sqf if metric == "l2" else 0.0, q)
    assert torch.all(p.index_select(0, q) >= thr.double())
    top = batch._thresholds(model, torch.full((b,), torch.inf), smax, smin, sq)
    assert top.dtype == torch.int32
    # ip: +inf reaches nothing; l2: inf - inf is NaN, which passes every product
    assert torch.all(top == (2**31 - 1 if metric == "ip" else -(2**31)))
