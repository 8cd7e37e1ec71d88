"""Per-request usage extraction: one provider response or stream -> normalised token counts.

Pure code (no database, no Django). Normalised categories: `input_tokens` is UNCACHED input
only; cache reads, 5-minute and 1-hour cache writes are apart; `output_tokens` includes
reasoning and `reasoning_tokens` is a subset of it, never added twice.

- `parsing`: `RequestUsage` and `extract_usage(kind, body)` for whole bodies, bare usage
  objects or counts already in our field names.
- `streaming`: `StreamUsageTracker` (SSE / NDJSON byte chunks) and `add_include_usage`.
"""

from __future__ import annotations

from usage.extraction.parsing import (
    SEARCH_CONTEXT_SIZES,
    RequestUsage,
    extract_usage,
    usage_format,
)
from usage.extraction.streaming import STYLES, StreamUsageTracker, add_include_usage

__all__ = [
    "SEARCH_CONTEXT_SIZES",
    "STYLES",
    "RequestUsage",
    "StreamUsageTracker",
    "add_include_usage",
    "extract_usage",
    "usage_format",
]
