-- bench/lua/common.lua — shared by the wrk scripts (loaded with dofile from
-- BENCH_LUA_DIR): thread numbering, the API key, distinct valid phone numbers,
-- and the done() hook that prints one machine-readable line for bench/run.sh.
--
-- Environment (read in every Lua state, since wrk's setup/done state and its
-- thread states do not share globals):
--   BENCH_KEY       the API key (X-API-Key)
--   BENCH_PREFIX    three digits after +91 for this run's numbers (e.g. "980"),
--                   so that no two wrk runs send to the same number
--   BENCH_THREADS   wrk -t, to stride the pairs file between threads

local M = {}

M.key = os.getenv("BENCH_KEY") or ""
M.nthreads = tonumber(os.getenv("BENCH_THREADS") or "2")

local threads = {}
local counter = 0

-- wrk: called once per thread before the run; numbers the threads 0..n-1.
function M.setup(thread)
    thread:set("id", counter)
    table.insert(threads, thread)
    counter = counter + 1
end

M.threads = threads

-- Indian mobile numbers, distinct within a run and across runs: +91 PPI T NNNNNN,
-- where PPI (BENCH_PREFIX, three digits: a 9x mobile prefix and a run digit) is
-- chosen by bench/run.sh per wrk run, T is the wrk thread and N a counter
-- spread over 10^6 by a multiplier coprime with 10^6 (so consecutive sends do
-- not share long prefixes, as real traffic would not). Valid for
-- libphonenumber: India's 9x mobile ranges are fully allocated.
function M.phone_gen(id)
    local prefix = os.getenv("BENCH_PREFIX") or "980"
    local n = 0
    return function()
        n = n + 1
        return string.format("91%s%d%06d", prefix, id % 10, (n * 3967 + 12345) % 1000000)
    end
end

-- Prints "BENCH key=value ..." for bench/run.sh; extra is a table of more
-- fields.
function M.report(summary, latency, extra)
    local e = summary.errors
    local parts = {
        "BENCH",
        "requests=" .. summary.requests,
        "duration_us=" .. summary.duration,
        string.format("rps=%.1f", summary.requests / (summary.duration / 1e6)),
        "p50_us=" .. latency:percentile(50),
        "p99_us=" .. latency:percentile(99),
        "p999_us=" .. latency:percentile(99.9),
        "max_us=" .. latency.max,
        "err_connect=" .. e.connect,
        "err_read=" .. e.read,
        "err_write=" .. e.write,
        "err_status=" .. e.status,
        "err_timeout=" .. e.timeout,
    }
    for k, v in pairs(extra or {}) do
        table.insert(parts, k .. "=" .. tostring(v))
    end
    io.write(table.concat(parts, " ") .. "\n")
end

-- Reads the "requestId code" pairs file into two arrays, keeping the lines
-- i with i % nthreads == id (every thread gets its own stride).
function M.load_pairs(path, id, nthreads)
    local ids, codes = {}, {}
    local f = io.open(path, "r")
    if not f then
        return ids, codes
    end
    local i = 0
    for line in f:lines() do
        if i % nthreads == id then
            local rid, code = line:match("^(%S+) (%d+)$")
            if rid then
                ids[#ids + 1] = rid
                codes[#codes + 1] = code
            end
        end
        i = i + 1
    end
    f:close()
    return ids, codes
end

-- After a run: writes the pairs that no thread took to path_out (thread t took
-- the first used[t] lines of its stride), so that the next phase starts where
-- this one stopped. Returns how many lines are left.
function M.save_remaining(path_in, path_out, used, nthreads)
    local f = io.open(path_in, "r")
    local out = io.open(path_out, "w")
    if not f or not out then
        return 0
    end
    local seen, left, i = {}, 0, 0
    for line in f:lines() do
        local t = i % nthreads
        seen[t] = (seen[t] or 0) + 1
        if seen[t] > (used[t] or 0) then
            out:write(line, "\n")
            left = left + 1
        end
        i = i + 1
    end
    f:close()
    out:close()
    return left
end

return M
