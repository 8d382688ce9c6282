-- dbpool.progress: progress reports for long jobs (dbpool.progress(total, label)).
--
--   local bar = dbpool.progress(#ids, "copy users")
--   for ... do ...; bar:add(batch_size) end
--   bar:done()
--
-- On a terminal (stderr) a bar redrawn in place, at most ten times a second:
--   copy users [=============>          ]  56%  5600/10000  1.9k/s  ETA 0:02
-- Elsewhere (a log, a pipe) a plain line at most once a second:
--   copy users: 5600/10000 (56%) 1.9k/s ETA 2s
-- Nothing at all with `dbpool --quiet`, `dbpool run --quiet` or DBPOOL_QUIET=1.
-- A nil or 0 total counts without a bar or ETA. done() prints the final line.
local M = { quiet = false }

local Progress = {}
Progress.__index = Progress

local function clock()
    local ok, core = pcall(require, "dbpool.core")
    if ok and core.now then return core.now end
    return os.clock
end

local function is_tty(fd)
    local ok, core = pcall(require, "dbpool.core")
    return ok and core.isatty and core.isatty(fd) or false
end

local function quiet_env()
    local q = os.getenv("DBPOOL_QUIET")
    return q ~= nil and q ~= "" and q ~= "0"
end

-- 1234567 -> "1.2M", 950 -> "950"
local function human(n)
    if n >= 1e9 then return ("%.1fG"):format(n / 1e9) end
    if n >= 1e6 then return ("%.1fM"):format(n / 1e6) end
    if n >= 1e4 then return ("%.1fk"):format(n / 1e3) end
    if n >= 100 or n == math.floor(n) then return ("%d"):format(math.floor(n + 0.5)) end
    return ("%.1f"):format(n)
end
M.human = human

-- seconds -> "0:07", "1:02:03"
local function clock_text(s)
    s = math.floor(s + 0.5)
    local h, m = s // 3600, (s % 3600) // 60
    if h > 0 then return ("%d:%02d:%02d"):format(h, m, s % 60) end
    return ("%d:%02d"):format(m, s % 60)
end

local function secs_text(s)
    if s < 10 then return ("%.2fs"):format(s) end
    if s < 60 then return ("%ds"):format(math.floor(s + 0.5)) end
    return clock_text(s)
end

-- new(total, label [, opts]): opts (for tests and embedding) may give
-- stream (default io.stderr), tty (default: isatty(2)), quiet, now (a clock),
-- width (the bar's cells, default 30), interval (seconds between plain lines, 1).
function M.new(total, label, opts)
    opts = opts or {}
    if total ~= nil and (type(total) ~= "number" or total ~= total or total < 0) then
        error("dbpool.progress: total must be a non-negative number or nil", 2)
    end
    if label ~= nil and type(label) ~= "string" then
        error("dbpool.progress: label must be a string", 2)
    end
    local now = opts.now or clock()
    local quiet = opts.quiet
    if quiet == nil then quiet = M.quiet or quiet_env() end
    local tty = opts.tty
    if tty == nil then tty = is_tty(2) end
    local t0 = now()
    return setmetatable({
        total = (total and total > 0) and total or nil,
        label = label or "progress",
        count = 0,
        quiet = quiet,
        tty = tty,
        out = opts.stream or io.stderr,
        now = now,
        started = t0,
        last_draw = nil,
        interval = opts.interval or (tty and 0.1 or 1),
        width = opts.width or 30,
        finished = false,
        drawn_len = 0,
    }, Progress)
end

function Progress:_text(final)
    local elapsed = self.now() - self.started
    local rate = elapsed > 0 and self.count / elapsed or 0
    local total = self.total
    if final then
        return ("%s: %s%s done in %s (%s/s)"):format(self.label, human(self.count),
            total and ("/" .. human(total)) or "", secs_text(elapsed), human(rate))
    end
    local pct = total and math.min(100, math.floor(self.count * 100 / total)) or nil
    local eta
    if total and rate > 0 and self.count < total then eta = (total - self.count) / rate end
    if self.tty then
        local bar = ""
        if total then
            local fill = math.min(self.width, math.floor(self.width * self.count / total))
            bar = " [" .. ("="):rep(math.max(fill - 1, 0)) .. (fill > 0 and (fill < self.width and ">" or "=") or "")
                .. (" "):rep(self.width - fill) .. "] " .. ("%3d%%"):format(pct)
        end
        return ("%s%s  %s%s  %s/s%s"):format(self.label, bar, human(self.count),
            total and ("/" .. human(total)) or "", human(rate), eta and ("  ETA " .. clock_text(eta)) or "")
    end
    return ("%s: %s%s%s %s/s%s"):format(self.label, human(self.count), total and ("/" .. human(total)) or "",
        pct and (" (" .. pct .. "%)") or "", human(rate), eta and (" ETA " .. secs_text(eta)) or "")
end

function Progress:_draw(force)
    if self.quiet or self.finished then return end
    local t = self.now()
    if not force then
        if self.last_draw then
            if t - self.last_draw < self.interval then return end
        elseif not self.tty and t - self.started < self.interval then
            return -- plain lines: the first one after a second, not at once
        end
    end
    self.last_draw = t
    local text = self:_text(false)
    if self.tty then
        local pad = self.drawn_len > #text and (" "):rep(self.drawn_len - #text) or ""
        self.out:write("\r", text, pad)
        self.drawn_len = #text
    else
        self.out:write(text, "\n")
    end
    self.out:flush()
end

-- add(n): n more done (default 1)
function Progress:add(n)
    n = n or 1
    if type(n) ~= "number" then error("progress:add: expected a number", 2) end
    self.count = self.count + n
    self:_draw(false)
    return self
end

-- set(n): n done in all
function Progress:set(n)
    if type(n) ~= "number" then error("progress:set: expected a number", 2) end
    self.count = n
    self:_draw(false)
    return self
end

-- done(): the final line (once)
function Progress:done()
    if self.finished then return self end
    if not self.quiet then
        local text = self:_text(true)
        if self.tty then
            local pad = self.drawn_len > #text and (" "):rep(self.drawn_len - #text) or ""
            self.out:write("\r", text, pad, "\n")
        else
            self.out:write(text, "\n")
        end
        self.out:flush()
    end
    self.finished = true
    return self
end
Progress.close = Progress.done
Progress.__close = Progress.done

Progress.__tostring = function(self) return "dbpool.progress (" .. self:_text(false) .. ")" end

return M
