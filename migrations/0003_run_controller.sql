-- Which controller process is running a run, so that a controller starting
-- up marks as interrupted only the runs of controllers that are gone, never
-- those of another live process (a daemon beside a manual `nightshift run`).
ALTER TABLE runs ADD COLUMN controller TEXT;
ALTER TABLE runs ADD COLUMN controller_pid INTEGER;
