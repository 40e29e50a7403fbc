"""SQL tables (SQLAlchemy 2) and session factory. Same code on SQLite and PostgreSQL."""
