"""The fault suite runs on the integration suite's real services and farms (PostgreSQL, Redis, moto's S3,
API and worker processes)."""

from tests.integration.conftest import *  # noqa: F403 - fixtures: postgres, s3, farm_factory, ...
