-- bench/lua/send.lua — POST /otp/send, one new number per request.
--
-- With BENCH_RECORD=DIR each thread writes "phone requestId" lines for its 201s
-- to DIR/sent.<thread> (the phone travels in X-Request-Id, which otpd echoes),
-- so the verify phases can be fed. That costs wrk a response() hook (~2-3 µs
-- of its CPU per reply), which bench/run.sh accepts in the measured send runs
-- too. BENCH_EXPIRES_IN adds "expiresIn" (seconds).
local C = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
setup = C.setup

local next_phone, out
local head
local extra = ""

function init(args)
    next_phone = C.phone_gen(id)
    local ttl = os.getenv("BENCH_EXPIRES_IN")
    if ttl and ttl ~= "" then
        extra = ',"expiresIn":' .. ttl
    end
    head = "POST /otp/send HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: " .. C.key ..
        "\r\nContent-Type: application/json\r\nX-Request-Id: "
    local dir = os.getenv("BENCH_RECORD")
    if dir and dir ~= "" then
        out = io.open(dir .. "/sent." .. id, "a")
        out:setvbuf("full")
        response = function(status, headers, body)
            if status == 201 then
                local rid = body:match('"requestId":"([^"]+)"')
                local phone = headers["X-Request-Id"]
                if rid and phone then
                    out:write(phone, " ", rid, "\n")
                end
            end
        end
    end
end

function request()
    local p = next_phone()
    local body = '{"phoneNumber":"+' .. p .. '"' .. extra .. '}'
    return head .. p .. "\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body
end

function done(summary, latency, requests)
    C.report(summary, latency)
end
