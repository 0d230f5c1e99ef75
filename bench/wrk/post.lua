-- wrk script for bench/run.py: POST a JSON body with a fresh Idempotency-Key and reference on every request,
-- and print the results as one JSON line (the harness parses the line starting with "WRK_JSON ").
-- Environment: BENCH_PATH, BENCH_KEY (bearer key, optional), BENCH_BODY (the body with @REF@ for the reference),
-- BENCH_RUN (the run id, part of every reference).
local counter = 0
local threads = {}
local path = os.getenv("BENCH_PATH")
local key = os.getenv("BENCH_KEY")
local template = os.getenv("BENCH_BODY")
local run = os.getenv("BENCH_RUN")

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  responses = {}
end

function request()
  counter = counter + 1
  local ref = run .. "-" .. tid .. "-" .. counter
  local headers = { ["Content-Type"] = "application/json", ["Idempotency-Key"] = ref }
  if key and key ~= "" then headers["Authorization"] = "Bearer " .. key end
  return wrk.format("POST", path, headers, (template:gsub("@REF@", ref)))
end

function response(status, headers, body)
  responses[status] = (responses[status] or 0) + 1
end

function done(summary, latency, requests)
  local statuses = {}
  for _, thread in ipairs(threads) do
    local r = thread:get("responses")
    for status, n in pairs(r) do statuses[tostring(status)] = (statuses[tostring(status)] or 0) + n end
  end
  local parts = {}
  for status, n in pairs(statuses) do table.insert(parts, string.format('"%s": %d', status, n)) end
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d,'
      .. ' "status": %d}, "latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f},'
      .. ' "statuses": {%s}}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout, summary.errors.status, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, table.concat(parts, ", ")))
end
