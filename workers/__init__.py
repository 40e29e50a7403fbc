"""Celery app and routing, build tasks, host discovery, toolchain runners, timing-cache sync, validation."""
