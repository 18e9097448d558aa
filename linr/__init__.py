"""linr: exact, attribute-filtered top-k retrieval over a live index, on GPU or CPU.

`import linr` needs only torch and numpy; the service, the Kafka ingester and faiss are
optional extras loaded where they are used.
"""

from linr.errors import FilterError, InvalidInput
from linr.filters import parse_filter
from linr.index import Index, Item, SearchResult, UpsertResult, read_manifest
from linr.knn import knn

__version__ = "0.1.0"

__all__ = [
    "FilterError",
    "Index",
    "InvalidInput",
    "Item",
    "SearchResult",
    "UpsertResult",
    "knn",
    "parse_filter",
    "read_manifest",
]
