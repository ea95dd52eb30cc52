-- wrk script: raw OpenBao Transit calls, the baseline the plugin is compared with.
--
--   wrk -t1 -cC -dD --latency -s scripts/bench/transit.lua https://127.0.0.1:PORT \
--       -- MODE CORPUS TOKEN_FILE MOUNT KEY [BATCH_ITEMS [THINK_MS]]
--
-- MODE is `decrypt` (one ciphertext per request), `batch` (one `batch_input` of BATCH_ITEMS
-- ciphertexts per request, the body the plugin sends) or `encrypt` (one plaintext per request,
-- with the explicit key_version the plugin names). CORPUS has one item per line:
--   CIPHERTEXT AAD_BASE64 PLAINTEXT_BASE64 KEY_VERSION
-- Requests walk the corpus in order, so consecutive requests (and the connections that are in
-- flight together) never carry the same item unless the corpus is shorter than the concurrency.
-- Every request presents the token in X-Vault-Token on a keep-alive HTTP/1.1 connection, as the
-- plugin's client does.
--
-- An answer counts as good only when its status is 200 and its body is what a success carries
-- (a plaintext, a ciphertext, or batch results without an error). Transit refuses a ciphertext
-- presented with other AAD bytes, so good decrypts also prove the AAD is the plugin's.
--
-- THINK_MS > 0 makes every connection wait that long before each request (wrk's delay()): a
-- paced client, to see how fast OpenBao answers a request that finds it idle.
--
-- At the end one line `WRK_RESULT {json}` reports counts and latency percentiles (microseconds)
-- for kms_bench to parse.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local function read_lines(path)
  local file = assert(io.open(path, "r"), "cannot open " .. path)
  local lines = {}
  for line in file:lines() do
    if line ~= "" then
      table.insert(lines, line)
    end
  end
  file:close()
  return lines
end

local mode, items, token, path, batch_items
local next_item = 1
good = 0
bad = 0
first_bad = ""

function init(args)
  mode = args[1]
  local corpus, token_file, mount, key = args[2], args[3], args[4], args[5]
  batch_items = tonumber(args[6] or "64")
  local think_ms = tonumber(args[7] or "0")
  if think_ms > 0 then
    -- Defined only when wanted: with delay() present wrk schedules every request on a timer.
    delay = function()
      return think_ms
    end
  end
  assert(mode == "decrypt" or mode == "batch" or mode == "encrypt", "unknown mode " .. tostring(mode))
  assert(corpus and token_file and mount and key,
    "usage: MODE CORPUS TOKEN_FILE MOUNT KEY [BATCH_ITEMS [THINK_MS]]")
  token = read_lines(token_file)[1]
  assert(token, "empty token file")
  items = {}
  for _, line in ipairs(read_lines(corpus)) do
    local ciphertext, aad, plaintext, version = line:match("^(%S+) (%S+) (%S+) (%d+)$")
    assert(ciphertext, "malformed corpus line")
    table.insert(items, {
      -- Pre-rendered JSON fragments: the per-request work stays a table lookup and a concat.
      decrypt = '"ciphertext":"' .. ciphertext .. '","associated_data":"' .. aad .. '"',
      encrypt = '{"plaintext":"' .. plaintext .. '","associated_data":"' .. aad
        .. '","key_version":' .. version .. '}',
    })
  end
  assert(#items > 0, "empty corpus")
  local verb = (mode == "encrypt") and "encrypt" or "decrypt"
  path = "/v1/" .. mount .. "/" .. verb .. "/" .. key
  wrk.method = "POST"
  wrk.headers["X-Vault-Token"] = token
  wrk.headers["Content-Type"] = "application/json"
end

local function take()
  local item = items[next_item]
  next_item = next_item % #items + 1
  return item
end

function request()
  local body
  if mode == "decrypt" then
    body = "{" .. take().decrypt .. "}"
  elseif mode == "encrypt" then
    body = take().encrypt
  else
    -- The plugin's batch body: a reference per item, and 207 for a partial failure.
    local parts = {}
    for index = 1, batch_items do
      parts[index] = "{" .. take().decrypt .. ',"reference":"' .. (index - 1) .. '"}'
    end
    body = '{"batch_input":[' .. table.concat(parts, ",") .. '],"partial_failure_response_code":207}'
  end
  return wrk.format(nil, path, nil, body)
end

function response(status, headers, body)
  local ok = status == 200
  if ok then
    if mode == "decrypt" then
      ok = body:find('"plaintext":"', 1, true) ~= nil
    elseif mode == "encrypt" then
      ok = body:find('"ciphertext":"vault:v', 1, true) ~= nil
    else
      ok = body:find('"batch_results":[', 1, true) ~= nil and body:find('"error":"[^"]') == nil
    end
  end
  if ok then
    good = good + 1
  else
    bad = bad + 1
    if first_bad == "" then
      first_bad = "HTTP " .. status
    end
  end
end

function done(summary, latency, requests)
  local good_total, bad_total, first = 0, 0, ""
  for _, thread in ipairs(threads) do
    good_total = good_total + (thread:get("good") or 0)
    bad_total = bad_total + (thread:get("bad") or 0)
    local reason = thread:get("first_bad") or ""
    if first == "" then
      first = reason
    end
  end
  local errors = summary.errors
  io.write(string.format(
    'WRK_RESULT {"duration_us":%d,"requests":%d,"good":%d,"bad":%d,"first_bad":"%s",'
      .. '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,'
      .. '"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.duration, summary.requests, good_total, bad_total, first,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
