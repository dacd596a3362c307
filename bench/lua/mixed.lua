-- bench/lua/mixed.lua — 1 send : 1 verify : 2 status reads, interleaved per
-- thread as send, status, verify, status.
--
-- The verifies take pairs like verify.lua (BENCH_PAIRS, BENCH_PAIRS_LEFT); the
-- status reads are GET BENCH_READ_PATH/{requestId} of a pair's request
-- (BENCH_READ_PATH=/otp), or, in a binary without that route, GET /wallet
-- (BENCH_READ_PATH=/wallet).
local C = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
setup = C.setup

local ids, codes, next_phone
local read_path = os.getenv("BENCH_READ_PATH") or "/otp"
local send_head, verify_head, auth
local step = 0

function init(args)
    ids, codes = C.load_pairs(os.getenv("BENCH_PAIRS"), id, C.nthreads)
    next_phone = C.phone_gen(id)
    used = 0
    exhausted = 0
    auth = "Host: 127.0.0.1\r\nX-API-Key: " .. C.key .. "\r\n"
    send_head = "POST /otp/send HTTP/1.1\r\n" .. auth .. "Content-Type: application/json\r\n"
    verify_head = "POST /otp/verify HTTP/1.1\r\n" .. auth .. "Content-Type: application/json\r\n"
end

local function post(head, body)
    return head .. "Content-Length: " .. #body .. "\r\n\r\n" .. body
end

local function read_id()
    -- the request verified last (or the first one, before any verify)
    return ids[math.max(used, 1)] or "req_00000000000000000000000"
end

function request()
    step = step % 4 + 1
    if step == 1 then
        return post(send_head, '{"phoneNumber":"+' .. next_phone() .. '"}')
    elseif step == 3 then
        used = used + 1
        if used > #ids then
            exhausted = 1
            wrk.thread:stop()
            used = #ids
            return "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        end
        return post(verify_head,
                    '{"requestId":"' .. ids[used] .. '","otpCode":"' .. codes[used] .. '"}')
    end
    if read_path == "/wallet" then
        return "GET /wallet HTTP/1.1\r\n" .. auth .. "\r\n"
    end
    return "GET " .. read_path .. "/" .. read_id() .. " HTTP/1.1\r\n" .. auth .. "\r\n"
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
