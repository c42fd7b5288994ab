"""Core: configuration, table specs, the lakehouse context, the Spark session, Delta I/O, errors."""
