"""Services that write usage data. One module per concern:

- records: synced lines (upsert on the natural key) and manual entries
- rollup: the daily and attribution roll-ups every write path keeps current
- requests: per-request usage (ingestion API and proxy)
- tag_values: the bound on distinct tag values a day (usage.bounds.TAG_MAX_VALUES)
"""
