-- wrk script for bench_ingest.py: POST /api/usage/events with fresh request ids.
--
--   wrk -t2 -c8 -d10s -s bench/ingest.lua URL -- KEY PREFIX EVENTS_PER_POST
--
-- Every request carries EVENTS_PER_POST OpenAI-shaped events whose request ids are unique
-- across threads and runs (PREFIX-thread-n-i). A response counts as an error unless it is a
-- 200 that rejected nothing. `done` prints one JSON line the Python side parses.

local threads = {}

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  key, prefix, per_post = args[1], args[2], tonumber(args[3])
  counter, errors, first_error = 0, 0, ""
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Bearer " .. key
  wrk.headers["Content-Type"] = "application/json"
end

local function event(n)
  local cached = (n % 2 == 1) and 512 or 0
  local model = (n % 3 == 0) and "gpt-4o-2024-08-06" or "gpt-4o-mini"
  return string.format(
    '{"request_id": "%s-%d-%d", "occurred_at": "2026-11-15T10:00:00Z", "model": "%s", '
      .. '"usage": {"prompt_tokens": %d, "completion_tokens": %d, "total_tokens": %d, '
      .. '"prompt_tokens_details": {"cached_tokens": %d}, '
      .. '"completion_tokens_details": {"reasoning_tokens": 0}}, '
      .. '"tags": {"project": "bench", "feature": "f%d"}}',
    prefix, thread_id, n, model, 1200 + n % 500, 300 + n % 200, 1500 + n % 700, cached, n % 5)
end

function request()
  local items = {}
  for i = 1, per_post do
    counter = counter + 1
    items[i] = event(counter)
  end
  return wrk.format(nil, nil, nil, "[" .. table.concat(items, ", ") .. "]")
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"rejected":0', 1, true) then
    errors = errors + 1
    if first_error == "" then first_error = status .. " " .. string.sub(body, 1, 200) end
  end
end

function done(summary, latency, requests)
  local errors_total, first = 0, ""
  for _, thread in ipairs(threads) do
    errors_total = errors_total + thread:get("errors")
    if first == "" then first = thread:get("first_error") end
  end
  local socket = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.6f, "errors": %d, "socket_errors": %d, '
      .. '"p50_ms": %.3f, "p95_ms": %.3f, "p99_ms": %.3f, "mean_ms": %.3f, "first_error": "%s"}\n',
    summary.requests, summary.duration / 1e6, errors_total,
    socket.connect + socket.read + socket.write + socket.status + socket.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.mean / 1000,
    string.gsub(first, '["\\%c]', "?")))
end
