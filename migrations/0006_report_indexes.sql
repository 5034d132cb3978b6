-- Indexes the compliance report's per-host lookups run on: each answers
-- from the index alone, without reading the table's rows.
CREATE INDEX pending_updates_host_security ON pending_updates (host_id, security, since, until);
CREATE INDEX reboot_periods_host_span ON reboot_periods (host_id, since, until);
CREATE INDEX verifications_ok ON verifications (host, kind, at) WHERE outcome = 'ok';
