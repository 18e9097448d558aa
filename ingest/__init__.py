"""Live updates from Kafka: the ingester, its message format, snapshots and dead letters.

Needs the `ingest` extra (kafka-python, pydantic); `import linr` never imports this.
See docs/ingest.md.
"""

from ingest.ingester import Ingester
from ingest.settings import IngestSettings

__all__ = ["Ingester", "IngestSettings"]
