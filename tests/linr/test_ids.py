import numpy as np
import pytest

from linr.errors import InvalidInput
from linr.ids import IdMap, IntIdTable, normalize_ids


def test_int_table_matches_dict(rng):
    table = IntIdTable(16)
    ref: dict[int, int] = {}
    universe = rng.choice(2**63 - 1, 5000, replace=False).astype(np.int64)
    universe[:3] = [0, 1, 2**63 - 1]
    next_row = 0
    for _ in range(40):
        pick = rng.choice(universe, rng.integers(1, 400), replace=False)
        present = np.array([int(i) in ref for i in pick])
        new = pick[~present]
        rows = np.arange(next_row, next_row + new.size)
        next_row += new.size
        table.insert(new, rows)
        ref.update(zip(new.tolist(), rows.tolist()))
        gone = pick[present][: rng.integers(0, present.sum() + 1)]
        table.remove(gone)
        for g in gone.tolist():
            del ref[g]
        probe = rng.choice(universe, 300)
        want = np.array([ref.get(int(i), -1) for i in probe])
        assert (table.lookup(probe) == want).all()
        assert len(table) == len(ref)


def test_bytes_per_item():
    """The id map's cost per item (the README quotes this): <= 40 bytes at 1M items."""
    n = 1_000_000
    m = IdMap()
    m.grow(n)
    m.insert(np.arange(n, dtype=np.int64) * 7919, np.arange(n), "int")
    per_item = m.memory_bytes() / n
    assert per_item <= 40, per_item


@pytest.mark.parametrize(
    "ids,msg",
    [
        ([1, "a"], "not an integer"),
        (["a", 1], "not a string"),
        ([-1], "out of range"),
        ([2**63], "out of range"),
        ([True], "not an integer"),
        ([""], "UTF-8 bytes"),
        (["x" * 257], "UTF-8 bytes"),
        ([1.5], "not an integer"),
    ],
)
def test_bad_ids(ids, msg):
    with pytest.raises(InvalidInput, match=msg):
        normalize_ids(ids, None)


def test_kind_is_fixed():
    with pytest.raises(InvalidInput, match="uses int ids"):
        normalize_ids(["a"], "int")


def test_string_ids_round_trip():
    m = IdMap()
    m.grow(8)
    m.insert(["a", "é", "7"], np.array([0, 3, 5]), "str")
    state = m.to_state(6)
    m2 = IdMap.from_state("str", state, 8)
    assert m2.lookup(["7", "a", "zz", "é"]).tolist() == [5, 0, -1, 3]
    assert m2.ids_of([3, 5]) == ["é", "7"]
