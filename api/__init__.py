"""The farm's HTTP API (FastAPI). Routes are thin: parse, call one service, return a public schema."""
