"""An e-commerce lakehouse on Apache Spark and Delta Lake: bronze, silver and gold layers."""

from __future__ import annotations

__version__ = "0.1.0"
