"""An S3 endpoint over real HTTP for tests: moto's server mode in a thread.

    url, stop = start_moto_server()
    try:
        ...  # boto3 / S3BlobStore(endpoint_url=url) / presigned URLs fetched with httpx
    finally:
        stop()

Clients still need credentials and a region: apply ``AWS_TEST_ENV`` (dummy values) first, e.g. with
``pytest.MonkeyPatch.context()`` in a session fixture.
"""

from __future__ import annotations

from collections.abc import Callable

AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
# Unset these so a developer's own AWS config can never leak into a test.
AWS_TEST_UNSET = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


def start_moto_server() -> tuple[str, Callable[[], None]]:
    """Start moto's S3 server on 127.0.0.1 and a free port; return (``http://127.0.0.1:<port>``, stop)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            server.stop()

    return f"http://{host}:{port}", stop
