"""pgonline: zero-downtime online schema changes for PostgreSQL."""

__version__ = "0.1.0"
