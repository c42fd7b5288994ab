"""State tables: the run ledger, the quarantine and the catalog registration."""
