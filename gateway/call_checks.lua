-- The gateway's checks of a whole request, run after the buffer and gRPC-Web filters (so the body
-- is complete and a gRPC-Web call already looks like gRPC) and before the JSON transcoder (so a
-- REST call still has its REST path). gateway/call_checks.py renders it, filling in the names
-- after an at sign; docs/operations.md ("Calls the gateway refuses") says why each check exists.

local SERVICE_PREFIXES = { @service_prefixes }
local MAX_CALLS_PER_CLIENT = @max_calls_per_client
local CALL_SECONDS = @call_seconds

local INVALID_ARGUMENT = 3
local RESOURCE_EXHAUSTED = 8
local ENCODINGS = { identity = true, deflate = true, gzip = true }

-- Headers gRPC parses itself; a value it cannot parse fails the call with INTERNAL "Error
-- parsing ... metadata" in the service (and a log line there). gRPC's own grammar, made a
-- little stricter where that is simpler (integers of at most 9 digits).
local function is_integer(value)
  return #value <= 9 and value:match("^%d+$") ~= nil
end

local function is_timeout(value)
  return #value <= 9 and value:match("^%d+[HMSmun]$") ~= nil
end

local function is_encoding(value)
  return ENCODINGS[value] == true
end

local function base64_bytes(value)
  local digits, padding = value:match("^([A-Za-z0-9+/]*)(=*)$")
  if digits == nil or #padding > 2 then
    return nil
  end
  if #padding > 0 and (#digits + #padding) % 4 ~= 0 then
    return nil
  end
  if #digits % 4 == 1 then
    return nil
  end
  return math.floor(#digits * 3 / 4)
end

local function is_base64(value)
  return base64_bytes(value) ~= nil
end

local function is_load_cost(value)
  -- lb-cost-bin holds a double before its name.
  local bytes = base64_bytes(value)
  return bytes ~= nil and bytes >= 8
end

local HEADER_RULES = {
  ["grpc-timeout"] = { is_timeout, "a gRPC timeout: 1 to 8 digits and a unit (H, M, S, m, u, n)" },
  ["grpc-encoding"] = { is_encoding, "identity, deflate or gzip" },
  ["grpc-internal-encoding-request"] = { is_encoding, "identity, deflate or gzip" },
  ["grpc-status"] = { is_integer, "an integer" },
  ["grpc-previous-rpc-attempts"] = { is_integer, "an integer" },
  ["grpc-retry-pushback-ms"] = { is_integer, "an integer" },
  ["lb-cost-bin"] = { is_load_cost, "base64 of at least 8 bytes" },
}
local BINARY_RULE = { is_base64, "base64" }

local function header_problem(headers)
  for name, value in pairs(headers) do
    local rule = HEADER_RULES[name]
    if rule == nil and name:sub(-4) == "-bin" then
      rule = BINARY_RULE
    end
    if rule ~= nil and not rule[1](value) then
      return "header " .. name .. " must be " .. rule[2]
    end
  end
  return nil
end

-- What Envoy itself counts as gRPC (its local replies to these become trailers-only).
local function is_grpc(content_type)
  return content_type == "application/grpc" or content_type:find("^application/grpc[+;]") ~= nil
end

local function is_service_path(path)
  for _, prefix in ipairs(SERVICE_PREFIXES) do
    if path:sub(1, #prefix) == prefix then
      return true
    end
  end
  return false
end

-- Every RPC of the services is unary: its body is exactly one length-prefixed message, plain or
-- compressed with the encoding the call names. Anything else would reach a service that waits
-- for the rest until the route timeout, holding one of the service's upstream slots.
local function message_problem(handle, encoding)
  local body = handle:body()
  local length = body and body:length() or 0
  if length < 5 then
    return "the call carries no complete gRPC message"
  end
  local flag, b1, b2, b3, b4 = string.byte(body:getBytes(0, 5), 1, 5)
  local announced = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
  if 5 + announced > length then
    return "the gRPC message is shorter than its length prefix says"
  end
  if 5 + announced < length then
    return "a unary call carries exactly one gRPC message"
  end
  if flag > 1 or (flag == 1 and encoding == "identity") then
    return "the gRPC message's compressed flag does not match its grpc-encoding"
  end
  return nil
end

local function refuse(handle, grpc, http_status, code, message, extra_headers)
  local headers
  if grpc then
    -- A trailers-only gRPC reply; the gRPC-Web filter turns it into a gRPC-Web one.
    headers = {
      [":status"] = "200",
      ["content-type"] = "application/grpc",
      ["grpc-status"] = tostring(code),
      ["grpc-message"] = message,
    }
    message = ""
  else
    -- The local reply mappers (gateway/local_replies.py) make the body a google.rpc.Status.
    headers = { [":status"] = tostring(http_status) }
  end
  for name, value in pairs(extra_headers or {}) do
    headers[name] = value
  end
  handle:respond(headers, message)
end

-- Calls in flight per client address, on this worker thread (each has its own Lua state):
-- client -> { [call id] = start time }. A call ends when its reply passes back through this
-- filter; one whose client reset it never does, so an entry also expires after the longest a
-- call can live here.
local calls_of = {}
local last_call_id = 0
local METADATA = "r3mes.client_calls"

local function admit(handle)
  local address = handle:streamInfo():downstreamRemoteAddress()
  local client = address:match("^(.*):%d+$") or address
  local now = os.time()
  local calls = calls_of[client] or {}
  local count = 0
  for id, started in pairs(calls) do
    if now - started > CALL_SECONDS then
      calls[id] = nil
    else
      count = count + 1
    end
  end
  if count >= MAX_CALLS_PER_CLIENT then
    return false
  end
  last_call_id = last_call_id + 1
  calls[last_call_id] = now
  calls_of[client] = calls
  local metadata = handle:streamInfo():dynamicMetadata()
  metadata:set(METADATA, "client", client)
  metadata:set(METADATA, "id", last_call_id)
  return true
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local content_type = (headers:get("content-type") or ""):match("^[^;]*"):lower()
  local grpc = is_grpc(content_type)
  local problem = header_problem(headers)
  if problem ~= nil then
    refuse(handle, grpc, 400, INVALID_ARGUMENT, problem)
    return
  end
  if is_service_path(headers:get(":path")) then
    if content_type ~= "application/grpc" and content_type ~= "application/grpc+proto" then
      local message = "this path takes gRPC or gRPC-Web with protobuf messages"
        .. " (content-type application/grpc or application/grpc-web); REST calls use the /v1/ paths"
      refuse(handle, grpc, 415, INVALID_ARGUMENT, message)
      return
    end
    -- Headers are read before body(), which yields: Envoy's header handle is void after that.
    problem = message_problem(handle, headers:get("grpc-encoding") or "identity")
    if problem ~= nil then
      refuse(handle, true, 400, INVALID_ARGUMENT, problem)
      return
    end
  end
  if not admit(handle) then
    local message = "too many calls in flight from one address; retry when some have ended"
    refuse(handle, grpc, 429, RESOURCE_EXHAUSTED, message, { ["retry-after"] = "1" })
  end
end

function envoy_on_response(handle)
  local call = handle:streamInfo():dynamicMetadata():get(METADATA)
  if call == nil then
    return
  end
  local calls = calls_of[call.client]
  if calls ~= nil then
    calls[call.id] = nil
    if next(calls) == nil then
      calls_of[call.client] = nil
    end
  end
end
