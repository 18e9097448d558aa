"""CPU search paths for small query batches, where a scan is bound by reading the codes
(docs/cpu.md): a selection that never sorts a whole score row (`select`), scoring only the
allowed rows in place (`small`), integer products over int8 codes made exact by a bound and
a rescore (`int8`), and a cache of filter masks for repeated filters (`masks`).

Each path has the plain torch/float64 reference it must match beside it in the tests
(tests/linr/test_cpu.py)."""
