"""Running plans: the Plan data, executor, backfill, journal, retry, progress and logs."""
