"""Operations on the lakehouse: backfills, time travel and rollback, maintenance, erasure."""
