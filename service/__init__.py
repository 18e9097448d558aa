"""linr's HTTP retrieval service (the `service` extra): `create_app(Settings(...))`.

Run it with `linr serve`, or `uvicorn --factory service:create_app` with LINR_* variables.
"""

from service.app import create_app
from service.settings import Settings

__all__ = ["Settings", "create_app"]
