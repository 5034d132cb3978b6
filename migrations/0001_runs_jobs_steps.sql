-- The service record of the fleet: who was touched, by which run, and how
-- each step went. Times are UTC, RFC 3339 text, so they sort and read alike.

CREATE TABLE hosts (
    id               INTEGER PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    address          TEXT,
    first_seen       TEXT NOT NULL,
    last_seen        TEXT NOT NULL,
    last_error_kind  TEXT
);

CREATE TABLE runs (
    id              INTEGER PRIMARY KEY,
    playbook        TEXT NOT NULL,
    trigger         TEXT NOT NULL CHECK (trigger IN ('schedule', 'manual', 'api')),
    operator        TEXT,
    window          TEXT,
    started         TEXT NOT NULL,
    finished        TEXT,
    status          TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed', 'halted', 'interrupted')),
    halted_because  TEXT
);
CREATE INDEX runs_started ON runs (started);

CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    host_id     INTEGER NOT NULL REFERENCES hosts (id),
    batch       INTEGER NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'running', 'ok', 'failed', 'skipped', 'deferred', 'interrupted')),
    error_kind  TEXT,
    started     TEXT,
    finished    TEXT,
    UNIQUE (run_id, host_id)
);
CREATE INDEX jobs_host ON jobs (host_id, started);

CREATE TABLE steps (
    id           INTEGER PRIMARY KEY,
    job_id       INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('command', 'update', 'backup', 'verify', 'reboot')),
    status       TEXT NOT NULL CHECK (status IN ('pending', 'running', 'ok', 'failed', 'skipped', 'interrupted')),
    exit_code    INTEGER,
    signal       TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    changed      INTEGER NOT NULL DEFAULT 0 CHECK (changed IN (0, 1)),
    started      TEXT,
    finished     TEXT,
    output_head  TEXT,
    output_tail  TEXT,
    UNIQUE (job_id, position)
);

-- Append-only: nothing in nightshift updates or deletes these rows.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY,
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    arguments  TEXT NOT NULL,
    outcome    TEXT NOT NULL
);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
