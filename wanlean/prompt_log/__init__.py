"""The prompt log: a local SQLite record of every prompt the pack sees, anomaly flags and summary statistics."""
