-- bench/lua/verify.lua — POST /otp/verify with the right code, each pending
-- request once.
--
-- BENCH_PAIRS is a file of "requestId code" lines (from bench/run.sh); thread t
-- takes lines t, t+n, t+2n, … A thread that runs out stops (wrk still divides
-- by the full duration, so requests/s is then understated, and done() says so
-- with exhausted=1). done() writes the lines nobody took to BENCH_PAIRS_LEFT
-- for the next phase.
local C = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
setup = C.setup

local ids, codes
local head

function init(args)
    ids, codes = C.load_pairs(os.getenv("BENCH_PAIRS"), id, C.nthreads)
    used = 0
    exhausted = 0
    head = "POST /otp/verify HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: " .. C.key ..
        "\r\nContent-Type: application/json\r\n"
end

function request()
    used = used + 1
    if used > #ids then
        exhausted = 1
        wrk.thread:stop()
        used = #ids
        return wrk.format("GET", "/healthz")
    end
    local body = '{"requestId":"' .. ids[used] .. '","otpCode":"' .. codes[used] .. '"}'
    return head .. "Content-Length: " .. #body .. "\r\n\r\n" .. body
end

function done(summary, latency, requests)
    local used_by, ex = {}, 0
    for _, t in ipairs(C.threads) do
        used_by[t:get("id")] = t:get("used")
        ex = math.max(ex, t:get("exhausted") or 0)
    end
    local left = C.save_remaining(os.getenv("BENCH_PAIRS"), os.getenv("BENCH_PAIRS_LEFT"),
                                  used_by, C.nthreads)
    C.report(summary, latency, {exhausted = ex, pairs_left = left})
end
