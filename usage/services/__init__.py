"""Services that write usage data. One module per concern:

- records: synced lines (upsert on the natural key) and manual entries
- rollup: the daily roll-up every write path keeps current
"""
