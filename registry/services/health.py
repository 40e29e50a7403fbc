"""Readiness: can this process reach its database and its blob store?"""

from __future__ import annotations

from sqlalchemy import text

from registry.stores import FarmStores


def readiness(stores: FarmStores) -> dict[str, str]:
    """{"database": "ok" | "error: …", "blobs": "ok" | "error: …"}."""
    checks = {}
    try:
        with stores.db.session() as s:
            s.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - report, don't crash
        checks["database"] = f"error: {exc.__class__.__name__}: {exc}"
    try:
        stores.blobs.exists("sha256:" + "0" * 64)
        checks["blobs"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["blobs"] = f"error: {exc.__class__.__name__}: {exc}"
    return checks
