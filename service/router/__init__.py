"""`linr router`: one HTTP front for a sharded, replicated set of `linr serve` processes
(docs/scaling.md). Needs the `service` and `ingest` extras."""

from service.router.app import create_router_app
from service.router.settings import RouterSettings

__all__ = ["RouterSettings", "create_router_app"]
