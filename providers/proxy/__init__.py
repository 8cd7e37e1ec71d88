"""The OpenAI/Anthropic-compatible proxy: forwards allow-listed calls and records their usage.

- `routes`: the allow-list of paths per provider and where each goes upstream.
- `auth`: the client's ingest key (Bearer or x-api-key) -> IngestKey.
- `upstream`: pooled urllib3 connections, header filtering, incremental body reads.
- `recording`: turns what came back (or did not) into one RequestEvent.
- `views`: the CSRF-exempt view tying them together.
"""
