-- Decides one request for every policy of a (tier, route) at once, or reserves
-- a lease of up to `wanted` admissions, atomically: all policies admit the same
-- number or none is charged, so no read-then-write race and no policy is used
-- up by a request another refused.
--
-- KEYS[i]   the state of policy i for this caller and route kind
-- ARGV[1]   wanted: admissions to reserve (0 only hands back)
-- ARGV[2]   returned: admissions of an earlier lease, granted on these same
--           keys, that were not used
-- ARGV[3]   '1' when refused requests use up request quotas
-- then per policy five values: kind, a, b, c, seed
--   'r' rate   a = emission interval (us), b = burst, c = the most a hand-back
--              may give back (us): what of the lease's reservation still lies
--              ahead; time that has passed has refilled the bucket already
--   'q' quota  a = limit, b = period end (Unix ms, the key's expiry)
--   's' soft quota: an allowance a caller pays beyond, counted like 'q'
--              but refusing only past its ceiling: a = the allowance, b =
--              period end, c = the ceiling (the requests the account's spend
--              cap pays for, allowance included), -1 for none
--   'w' as 's', but past the ceiling only flagged, never refused
--              (spend_cap_action = "warn")
--   'b' bytes  a = limit, b unused (bytes are added as they are sent)
--   seed       for quotas and allowances: the least the count is,
--              when Redis lost it (restarted empty): the count is raised to
--              it, at once and for good, and never lowered; 0 otherwise
--
-- Returns { granted, then per policy: refused (0/1), remaining, wait (us) }:
-- remaining after the grant; for rates, wait is the time until the bucket is
-- full again or, when refused, until one more request conforms. For 's' and
-- 'w', refused means past the ceiling, and the third value is the count after
-- the grant instead (what the caller has used, beyond the allowance too).
local wanted = tonumber(ARGV[1])
local returned = tonumber(ARGV[2])
local count_rejected = ARGV[3] == '1'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local kinds, as, bs, cs, held, room = {}, {}, {}, {}, {}, {}
local granted = wanted
for i = 1, #KEYS do
  local base = 4 + (i - 1) * 5
  local kind, a, b, c = ARGV[base], tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  local seed = tonumber(ARGV[base + 4])
  kinds[i], as[i], bs[i], cs[i] = kind, a, b, c
  local stored = tonumber(redis.call('GET', KEYS[i]))
  if (kind == 'q' or kind == 's' or kind == 'w') and seed > (stored or 0) then
    -- Written now, whatever is decided below: a refused request must not
    -- leave the count unseeded for the next one.
    stored = seed
    redis.call('SET', KEYS[i], seed, 'PXAT', b)
  end
  if kind == 'r' then
    -- GCRA: the theoretical arrival time of the next request.
    local tat = (stored or now) - math.min(returned * a, c)
    if tat < now then tat = now end
    held[i] = tat
    room[i] = math.floor((now + b * a - tat) / a)
  elseif kind == 'q' or kind == 's' or kind == 'w' then
    local used = (stored or 0) - returned
    if used < 0 then used = 0 end
    held[i] = used
    if kind == 'q' then
      room[i] = a - used
    elseif kind == 's' and c >= 0 then
      room[i] = c - used
    else
      room[i] = wanted
    end
  else
    held[i] = stored or 0
    if held[i] < a then room[i] = wanted else room[i] = 0 end
  end
  if room[i] < granted then granted = room[i] end
end
if granted < 0 then granted = 0 end

local out = { granted }
for i = 1, #KEYS do
  local kind, a, b = kinds[i], as[i], bs[i]
  local refused = 0
  if room[i] < 1 and kind ~= 'w' then refused = 1 end
  if kind == 'r' then
    local tat = held[i] + granted * a
    if granted > 0 or returned > 0 then
      if tat > now then
        redis.call('SET', KEYS[i], tat, 'PX', math.ceil((tat - now) / 1000) + 1)
      else
        redis.call('DEL', KEYS[i])
      end
    end
    local wait = tat - now
    if granted == 0 and wanted > 0 then wait = held[i] + a - (now + b * a) end
    if wait < 0 then wait = 0 end
    out[#out + 1] = refused
    out[#out + 1] = math.max(0, math.floor((now + b * a - tat) / a))
    out[#out + 1] = wait
  elseif kind == 'q' or kind == 's' or kind == 'w' then
    local used = held[i] + granted
    if kind == 'q' and granted == 0 and wanted > 0 and count_rejected then used = used + 1 end
    if used ~= held[i] or returned > 0 then
      redis.call('SET', KEYS[i], used, 'PXAT', b)
    end
    if kind == 'w' and cs[i] >= 0 and used > cs[i] then refused = 1 end
    out[#out + 1] = refused
    out[#out + 1] = math.max(0, a - used)
    if kind == 'q' then out[#out + 1] = 0 else out[#out + 1] = used end
  else
    out[#out + 1] = refused
    out[#out + 1] = math.max(0, a - held[i])
    out[#out + 1] = 0
  end
end
return out
