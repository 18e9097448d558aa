"""Offline recall evaluation (`linr eval`) over the dataset formats of linr.io: exact
ground truth, recall@k with ties and short lists counted correctly, the post-filtering
baseline, selectivity buckets, and the report (JSON, Markdown, PNG plots).

    from linr.eval import EvalConfig, run_eval, write_report
    report = run_eval(EvalConfig(base="base.fbin", queries="q.fbin", ks=(10,)))
    write_report(report, Path("out"))

Only torch and numpy are needed to import it; h5py, pyarrow and matplotlib (the `eval`
extra) load when an HDF5 or Parquet file is read or a plot is drawn. See docs/eval.md.
"""

from linr.eval.recall import recall_at_k
from linr.eval.report import write_report
from linr.eval.runner import EvalConfig, run_eval

__all__ = [
    "EvalConfig",
    "recall_at_k",
    "run_eval",
    "write_report",
]
