-- wrk script of bench/load.py: cycles through pre-generated requests and prints one JSON line.
-- args: method, path, bodies file (one body a line; "-" for none), then "Name: value" headers.
local requests, count, index = {}, 0, 0
statuses = {} -- global: done() reads each thread's copy with thread:get()
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local method, path, bodies = args[1], args[2], args[3]
  local headers = {}
  for i = 4, #args do
    local name, value = args[i]:match("^([^:]+):%s*(.*)$")
    headers[name] = value
  end
  if bodies == "-" then
    requests[1] = wrk.format(method, path, headers)
  else
    for body in io.lines(bodies) do
      requests[#requests + 1] = wrk.format(method, path, headers, body)
    end
  end
  count = #requests
end

function request()
  index = index + 1
  return requests[(index - 1) % count + 1]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      merged[status] = (merged[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(merged) do
    parts[#parts + 1] = string.format('"%d": %d', status, n)
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "mean_us": %.1f, "max_us": %d, '
      .. '"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, "statuses": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean, latency.max,
    e.connect, e.read, e.write, e.timeout, table.concat(parts, ", ")))
end
