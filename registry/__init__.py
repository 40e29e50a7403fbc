"""trtfarm's domain: specs, keys, targets, compatibility, SQL tables, blob stores, services, SDK, CLI.

Nothing here imports FastAPI or Celery; heavy packages are imported where they are used.
"""

__version__ = "0.1.0"
