-- wrk script: every request carries an `x-user-id` header drawn from 10,000
-- user ids, so that Turnout's sticky hashing spreads users over its buckets
-- (and nginx's split_clients does the same on the same header).
-- Requests are pre-formatted once per wrk thread: request() only picks one,
-- so the script costs wrk almost nothing.

local USERS = 10000
local requests = {}

function init(args)
  for i = 1, USERS do
    requests[i] = wrk.format(nil, nil, { ["x-user-id"] = "user-" .. i })
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

function request()
  return requests[math.random(USERS)]
end
