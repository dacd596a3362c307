-- bench/lua/status.lua — GET /otp/{requestId}, the status read, over the
-- requests of a pairs file (BENCH_PAIRS, "requestId code" lines, as for
-- verify.lua) in turn; nothing is used up, so the file is only read. Thread
-- t reads lines t, t+n, t+2n, ….
local C = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
setup = C.setup

local ids
local i = 0
local head, tail

function init(args)
    ids = C.load_pairs(os.getenv("BENCH_PAIRS"), id, C.nthreads)
    head = "GET /otp/"
    tail = " HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: " .. C.key .. "\r\n\r\n"
end

function request()
    if #ids == 0 then
        return head .. "req_00000000000000000000000" .. tail -- answered 404: counted as errors
    end
    i = i % #ids + 1
    return head .. ids[i] .. tail
end

function done(summary, latency, requests)
    C.report(summary, latency)
end
