-- bench/lua/fixed.lua — the reference load: POST of a small JSON body (the
-- size of a send), for nginx answering a fixed JSON reply.
local C = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
setup = C.setup

wrk.method = "POST"
wrk.path = "/otp/send"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = C.key
wrk.body = '{"phoneNumber":"+919876543210"}'

function done(summary, latency, requests)
    C.report(summary, latency)
end
