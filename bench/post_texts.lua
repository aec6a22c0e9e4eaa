-- wrk script: POST the JSON bodies of a file (one body a line) in turn, count answers by status,
-- and print one machine-readable summary line when done.
--
--   wrk -t1 -c64 -d10s --latency -s bench/post_texts.lua http://127.0.0.1:8080/prediction -- bodies.jsonl
--
-- The bodies file is written by bench/data.py: ASCII JSON, one request body a line.

local threads = {}

function setup(thread)
   thread:set("id", #threads)
   table.insert(threads, thread)
end

function init(args)
   local path = args[1]
   if path == nil then
      error("usage: wrk ... -s post_texts.lua URL -- BODIES_FILE")
   end
   requests = {}
   for line in io.lines(path) do
      if #line > 0 then
         local headers = { ["Content-Type"] = "application/json" }
         requests[#requests + 1] = wrk.format("POST", nil, headers, line)
      end
   end
   if #requests == 0 then
      error("no request bodies in " .. path)
   end
   -- Threads start at different bodies so that they do not send the same text at once.
   counter = (id * 7919) % #requests
   statuses = {}
end

function request()
   counter = counter % #requests + 1
   return requests[counter]
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local totals = {}
   for _, thread in ipairs(threads) do
      for status, n in pairs(thread:get("statuses")) do
         totals[status] = (totals[status] or 0) + n
      end
   end
   local counts = {}
   for status, n in pairs(totals) do
      counts[#counts + 1] = string.format('"%d":%d', status, n)
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d},' ..
      '"statuses":{%s}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.min, latency.mean, latency.stdev,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
      latency.max,
      table.concat(counts, ",")))
end
