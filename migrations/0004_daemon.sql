-- What the daemon and the command line share through the catalog: which
-- hosts a playbook is running on, which schedule fires were looked at and
-- what became of them, and runs asked for with `nightshift trigger`.

-- Why a job was deferred, skipped or cut short, in words.
ALTER TABLE jobs ADD COLUMN detail TEXT;
-- The schedule (or trigger request) a daemon run was started for.
ALTER TABLE runs ADD COLUMN schedule TEXT;
-- The controller process as no other can be, even with its pid reused (a
-- daemon is pid 1 in every container): boot id, pid, start time.
ALTER TABLE runs ADD COLUMN controller_instance TEXT;

-- A playbook runs at most once at a time on a host: a run holds a lease on
-- (host, playbook) while its job there runs. A lease whose run is over, or
-- whose controller on this machine is gone, is stale and may be taken.
CREATE TABLE host_leases (
    host            TEXT NOT NULL,
    playbook        TEXT NOT NULL,
    run_id          INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    controller      TEXT NOT NULL,
    controller_pid  INTEGER NOT NULL,
    since           TEXT NOT NULL,
    PRIMARY KEY (host, playbook)
) WITHOUT ROWID;

-- Up to when the daemon has looked at each schedule's fires, so a restart
-- knows which fires it missed.
CREATE TABLE schedule_cursors (
    schedule       TEXT PRIMARY KEY,
    checked_until  TEXT NOT NULL
) WITHOUT ROWID;

-- Every fire the daemon looked at: started, caught up after downtime,
-- missed (and why), or busy (the previous run was still going).
CREATE TABLE schedule_fires (
    id        INTEGER PRIMARY KEY,
    schedule  TEXT NOT NULL,
    playbook  TEXT NOT NULL,
    fire      TEXT NOT NULL,
    outcome   TEXT NOT NULL CHECK (outcome IN ('started', 'caught_up', 'missed', 'busy')),
    detail    TEXT,
    run_id    INTEGER REFERENCES runs (id) ON DELETE SET NULL,
    at        TEXT NOT NULL
);
CREATE INDEX schedule_fires_schedule ON schedule_fires (schedule, fire);

-- Runs asked of the daemon by `nightshift trigger`.
CREATE TABLE trigger_requests (
    id             INTEGER PRIMARY KEY,
    playbook       TEXT NOT NULL,
    host_limit     TEXT,
    ignore_window  INTEGER NOT NULL DEFAULT 0 CHECK (ignore_window IN (0, 1)),
    reason         TEXT,
    requested_by   TEXT NOT NULL,
    requested_at   TEXT NOT NULL,
    state          TEXT NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending', 'waiting', 'started', 'refused')),
    detail         TEXT,
    run_id         INTEGER REFERENCES runs (id) ON DELETE SET NULL,
    updated        TEXT
);
CREATE INDEX trigger_requests_state ON trigger_requests (state);

-- Hosts waiting for their window, found without scanning every job; a
-- host's later jobs, for "has it been done since"; steps running now.
CREATE INDEX jobs_deferred ON jobs (host_id, id) WHERE status = 'deferred';
CREATE INDEX jobs_host_id ON jobs (host_id, id);
CREATE INDEX steps_running ON steps (job_id) WHERE status = 'running';
