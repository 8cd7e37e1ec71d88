"""API rate-limit monitoring: what providers tell every caller about their limits.

- ``readings``: the reading an adapter makes of one response's headers (the parsing helpers
  adapters share; each provider's header names live in its adapter).
- ``tracker``: the proxy's in-memory latest state per (account, model) and 429 counts, flushed
  to the database at most once a second per process by a background thread.
- ``services`` (writes), ``selectors`` (reads), ``alerts`` (headroom and 429-burst alerts).
"""
