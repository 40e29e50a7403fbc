"""The baseline of bench/registry_load.py: a bare FastAPI route returning a JSON body of the resolve
answer's size (BENCH_BODY_BYTES), served like `trtfarm api` (uvicorn, one process, log level warning).

    BENCH_BODY_BYTES=2000 python bench/bare_app.py --port 8999
"""

from __future__ import annotations

import argparse
import os

import uvicorn
from fastapi import FastAPI

app = FastAPI()
BODY = {"padding": "x" * max(0, int(os.environ.get("BENCH_BODY_BYTES", "2000")) - 15)}


@app.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@app.get("/bare")
def bare() -> dict:  # a sync route, like the registry's: it runs in the same anyio thread pool
    return BODY


@app.post("/bare")
def bare_post(request: dict) -> dict:  # the baseline of a JSON POST (bench/submit_load.py): parse, answer
    return BODY


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    uvicorn.run(app, host="127.0.0.1", port=parser.parse_args().port, log_level="warning")
