"""Silver: one clean, typed, current row per key, kept by idempotent MERGEs applied in order."""
