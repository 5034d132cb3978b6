-- What runs found and changed on each host, and what the store holds.
-- Times are UTC, RFC 3339 text, as in 0001.

-- A host's latest state, kept current as jobs finish, so "where does the
-- fleet stand" reads one row per host instead of scanning every step.
ALTER TABLE hosts ADD COLUMN last_job_id INTEGER REFERENCES jobs (id) ON DELETE SET NULL;
ALTER TABLE hosts ADD COLUMN last_job_status TEXT;
ALTER TABLE hosts ADD COLUMN last_patch_at TEXT;
ALTER TABLE hosts ADD COLUMN last_patch_job_id INTEGER REFERENCES jobs (id) ON DELETE SET NULL;
ALTER TABLE hosts ADD COLUMN last_backup_at TEXT;
ALTER TABLE hosts ADD COLUMN last_backup_snapshot TEXT;

CREATE INDEX jobs_run ON jobs (run_id, status);
CREATE INDEX runs_playbook ON runs (playbook, started);

-- Full output of a step, kept for the output retention period (90 days by
-- default); the step's bounded head and tail stay forever.
CREATE TABLE step_output (
    step_id  INTEGER PRIMARY KEY REFERENCES steps (id) ON DELETE CASCADE,
    at       TEXT NOT NULL,
    output   BLOB NOT NULL
);
CREATE INDEX step_output_at ON step_output (at);

-- Installed and upgradable versions per host, as the last update or check
-- saw them. `pending_since` is when an upgrade of the package was first
-- seen available and not applied: the patch SLA counts from it.
CREATE TABLE packages (
    host_id        INTEGER NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    installed      TEXT,
    upgradable     TEXT,
    security       INTEGER NOT NULL DEFAULT 0 CHECK (security IN (0, 1)),
    pending_since  TEXT,
    seen           TEXT NOT NULL,
    PRIMARY KEY (host_id, name)
) WITHOUT ROWID;
CREATE INDEX packages_pending ON packages (host_id, security) WHERE upgradable IS NOT NULL;

-- What each update job changed, from and to.
CREATE TABLE package_changes (
    id             INTEGER PRIMARY KEY,
    job_id         INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    host_id        INTEGER NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    from_version   TEXT,
    to_version     TEXT,
    security       INTEGER NOT NULL DEFAULT 0 CHECK (security IN (0, 1)),
    pending_since  TEXT,
    at             TEXT NOT NULL
);
CREATE INDEX package_changes_host ON package_changes (host_id, at);

-- A row while a host needs a reboot, since when and why.
CREATE TABLE reboot_required (
    host_id  INTEGER PRIMARY KEY REFERENCES hosts (id) ON DELETE CASCADE,
    since    TEXT NOT NULL,
    reason   TEXT NOT NULL
);

-- A copy of the store's snapshot metadata: the store is the truth
-- (`nightshift catalog rebuild-snapshots` refills this from it).
CREATE TABLE snapshots (
    id                TEXT PRIMARY KEY,
    host              TEXT NOT NULL,
    time              TEXT NOT NULL,
    paths             TEXT NOT NULL,   -- JSON array
    tags              TEXT NOT NULL,   -- JSON array
    parent            TEXT,
    files             INTEGER NOT NULL,
    bytes_total       INTEGER NOT NULL,
    new_bytes_stored  INTEGER NOT NULL,
    run_id            INTEGER REFERENCES runs (id) ON DELETE SET NULL,
    job_id            INTEGER REFERENCES jobs (id) ON DELETE SET NULL,
    forgotten         TEXT,            -- when forget removed it from the store
    damaged_paths     INTEGER          -- paths lost, when repair found damage
);
CREATE INDEX snapshots_host ON snapshots (host, time);

CREATE TABLE restores (
    id            INTEGER PRIMARY KEY,
    at            TEXT NOT NULL,
    operator      TEXT NOT NULL,
    snapshot_id   TEXT NOT NULL,
    paths         TEXT NOT NULL,       -- JSON array
    target_host   TEXT NOT NULL,
    target_path   TEXT NOT NULL,
    files         INTEGER NOT NULL,
    bytes         INTEGER NOT NULL,
    outcome       TEXT NOT NULL CHECK (outcome IN ('ok', 'failed', 'partial')),
    verified      TEXT NOT NULL CHECK (verified IN ('all', 'some', 'none')),
    error         TEXT
);
CREATE INDEX restores_target ON restores (target_host, at);

-- Backup checks and restore tests, with their figures (JSON).
CREATE TABLE verifications (
    id           INTEGER PRIMARY KEY,
    at           TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('store_check', 'restore_test')),
    host         TEXT,
    snapshot_id  TEXT,
    outcome      TEXT NOT NULL CHECK (outcome IN ('ok', 'failed')),
    figures      TEXT NOT NULL,
    job_id       INTEGER REFERENCES jobs (id) ON DELETE SET NULL
);
CREATE INDEX verifications_host ON verifications (host, kind, at);
