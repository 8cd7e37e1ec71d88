"""Streaming: keep the usage a streamed response reports as its bytes pass through.

Where each provider puts usage in a stream: `shared/reference/provider-apis.md` §11 item 7.
"""

from __future__ import annotations

import json
from decimal import Decimal

from providers.adapters.base import UsageFormat
from providers.registry import get_adapter_class
from usage.extraction.parsing import (
    RequestUsage,
    _dict,
    _unwrap,
    carries_usage,
    extract_usage,
    usage_format,
)

STYLES = ("sse", "ndjson")


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except (ValueError, RecursionError):
        return False
    return True


def add_include_usage(body: dict) -> dict:
    """Ask an OpenAI-compatible streamed chat/completions request to send a final usage chunk.

    Without `stream_options.include_usage` OpenAI streams carry no usage at all (ref §6.1), so
    the tracker forces it on (even over an explicit false: an unpriced request is worse than an
    extra `choices: []` chunk). Returns a new dict; other stream_options are kept. Only for
    OpenAI-compatible endpoints: Anthropic rejects unknown fields, and the Responses API (an
    `input` body) always reports usage in `response.completed`.
    """
    if body.get("stream") is not True or not ("messages" in body or "prompt" in body):
        return body
    options = body.get("stream_options")
    options = dict(options) if isinstance(options, dict) else {}
    if options.get("include_usage") is True:
        return body
    options["include_usage"] = True
    return {**body, "stream_options": options}


class StreamUsageTracker:
    """Watches a streamed response passing through and keeps the usage it reports.

    `feed()` takes raw bytes split anywhere (mid-line, mid-UTF-8 character) and never raises on
    stream content: malformed events are skipped so the client's stream is never disturbed.
    `usage()` may raise ValueError if the provider's counts are invalid.
    """

    # A Responses `response.completed` event repeats the whole output, so lines can be large;
    # past this a line is dropped rather than buffered without bound.
    MAX_LINE_BYTES = 16 * 1024 * 1024

    def __init__(self, kind: str, style: str) -> None:
        self.format = usage_format(kind)  # ValueError for an unknown kind
        if style not in STYLES:
            raise ValueError(f"style: expected one of {STYLES}, got {style!r}")
        self.kind = kind
        self.style = style
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer already known to hold no newline
        self._skipping = False  # inside an over-long line, waiting for its end
        self._data: list[bytes] = []  # SSE data lines of the event being read
        self._model = ""
        self._response_id = ""
        self._last: dict | None = None  # latest object carrying usage (whole-body shape)
        self._anthropic_start: dict | None = None
        self._anthropic_delta: dict | None = None
        # Bytes an event carrying usage must contain (the provider's own usage keys too).
        own = get_adapter_class(kind).usage_object_keys
        self._markers = (b"usage", *(key.encode() for key in own if "usage" not in key))

    def feed(self, chunk: bytes) -> None:
        """Consume the next bytes of the stream."""
        self._buffer += chunk
        while (end := self._buffer.find(b"\n", self._scanned)) >= 0:
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            self._scanned = 0
            if self._skipping:
                self._skipping = False
                continue
            self._line(line[:-1] if line.endswith(b"\r") else line)
        self._scanned = len(self._buffer)
        if len(self._buffer) > self.MAX_LINE_BYTES:
            self._buffer.clear()
            self._scanned = 0
            self._skipping = True

    def usage(self) -> RequestUsage:
        """Usage known so far; found=False if no usage has arrived (e.g. a cut stream)."""
        self._peek_unterminated()
        if self.format == UsageFormat.MESSAGES:
            if self._anthropic_start is None and self._anthropic_delta is None:
                return RequestUsage(model=self._model, response_id=self._response_id)
            # message_delta counts are cumulative: the last delta wins, and message_start
            # fills the fields the delta lacks (ref §7).
            merged = {**(self._anthropic_start or {}), **(self._anthropic_delta or {})}
            body = {"model": self._model, "id": self._response_id, "usage": merged}
            return extract_usage(self.kind, body)
        if self._last is None:
            return RequestUsage(model=self._model, response_id=self._response_id)
        result = extract_usage(self.kind, self._last)
        result.model = result.model or self._model
        result.response_id = result.response_id or self._response_id
        return result

    def _line(self, line: bytes) -> None:
        if self.style == "ndjson":
            if line.strip():
                self._payload(line)
        elif not line.strip():
            self._dispatch()
        elif line.startswith(b"data:"):
            if self._data and _is_json(b"\n".join(self._data)):
                self._dispatch()  # a server that omits the blank line between events
            value = line[5:]
            self._data.append(value[1:] if value.startswith(b" ") else value)
        # "event:", "id:", "retry:" and ":" comments are ignored: JSON "type" names the event.

    def _dispatch(self) -> None:
        data, self._data = b"\n".join(self._data), []
        if data.strip() and data.strip() != b"[DONE]":
            self._payload(data)

    def _peek_unterminated(self) -> None:
        """Read an event the stream ended without terminating (no blank line / newline)."""
        if self._data:
            self._payload(b"\n".join(self._data))
        tail = bytes(self._buffer).rstrip(b"\r")
        if tail and not self._skipping:
            if self.style == "ndjson":
                self._payload(tail)
            elif tail.startswith(b"data:"):
                self._payload(tail[5:])

    def _payload(self, data: bytes) -> None:
        # Skip parsing chunks that cannot change our state: most of a stream is text deltas.
        if self._model:
            if self.style == "sse" and not any(marker in data for marker in self._markers):
                return
            if self.style == "ndjson" and (b'"done":false' in data or b'"done": false' in data):
                return
        try:
            event = json.loads(data, parse_float=Decimal)
        except (ValueError, RecursionError):  # also UnicodeDecodeError; nesting without end
            return
        if isinstance(event, dict):
            self._observe(event)

    def _observe(self, event: dict) -> None:
        if self.format == UsageFormat.MESSAGES:
            if event.get("type") == "message_start":
                message = _dict(event.get("message"))
                self._remember(message)
                if isinstance(message.get("usage"), dict):
                    self._anthropic_start = message["usage"]
            elif event.get("type") == "message_delta" and isinstance(event.get("usage"), dict):
                self._anthropic_delta = event["usage"]
            return
        if self.format == UsageFormat.LOCAL and self.style == "ndjson":
            self._remember(event)
            if event.get("done") is True:
                self._last = event
            return
        body = _unwrap(self.kind, event)
        self._remember(body)
        if carries_usage(self.kind, body):  # one without never erases the last one seen
            self._last = body

    def _remember(self, body: dict) -> None:
        if not self._model and isinstance(body.get("model"), str):
            self._model = body["model"]
        if not self._response_id and isinstance(body.get("id"), str):
            self._response_id = body["id"]
