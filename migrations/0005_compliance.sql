-- The history a compliance report reads back for any date (`report
-- compliance --as-of`): `packages` and `reboot_required` only say how
-- things stand now.

-- Each pending upgrade of a package on a host, from when it was first seen
-- available until it was applied or no longer offered. One open row (no
-- `until`) per host and package at a time; `since` matches the package's
-- `pending_since`.
CREATE TABLE pending_updates (
    id        INTEGER PRIMARY KEY,
    host_id   INTEGER NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    name      TEXT NOT NULL,
    version   TEXT NOT NULL,
    security  INTEGER NOT NULL DEFAULT 0 CHECK (security IN (0, 1)),
    since     TEXT NOT NULL,
    until     TEXT,
    job_id    INTEGER REFERENCES jobs (id) ON DELETE SET NULL  -- the update that applied it
);
CREATE INDEX pending_updates_host ON pending_updates (host_id, since);
CREATE UNIQUE INDEX pending_updates_open ON pending_updates (host_id, name) WHERE until IS NULL;

-- Each time a host needed a reboot, from when it was first seen needing
-- one until it no longer did.
CREATE TABLE reboot_periods (
    id       INTEGER PRIMARY KEY,
    host_id  INTEGER NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    since    TEXT NOT NULL,
    until    TEXT,
    reason   TEXT NOT NULL
);
CREATE INDEX reboot_periods_host ON reboot_periods (host_id, since);

-- Security updates applied in a period, for the time-to-patch figures.
CREATE INDEX package_changes_at ON package_changes (at) WHERE security = 1;

-- What the catalog knew before this history was kept.
INSERT INTO pending_updates (host_id, name, version, security, since, until, job_id)
    SELECT host_id, name, to_version, security, pending_since, at, job_id
    FROM package_changes WHERE pending_since IS NOT NULL AND to_version IS NOT NULL;
INSERT INTO pending_updates (host_id, name, version, security, since)
    SELECT host_id, name, upgradable, security, COALESCE(pending_since, seen)
    FROM packages WHERE upgradable IS NOT NULL;
INSERT INTO reboot_periods (host_id, since, reason)
    SELECT host_id, since, reason FROM reboot_required;
