-- Issue 14: fencing and one active relay / fix run, kept by the store.
--
-- A job's lease carries a token (lease_token) that grows with every lease
-- taken, whichever the job: a store-wide counter (lease_counter) hands them
-- out. Heartbeats, progress and the end of a job are written only with the
-- token of the lease that holds it, and the engine claims a bucket's
-- checkpoint with it, so a worker whose lease was taken over is refused at
-- its next write.
ALTER TABLE jobs ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;

CREATE TABLE lease_counter (
    id    INTEGER PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO lease_counter (id, value) VALUES (1, 0);

-- The fix a data-fix job runs (from its parameters), so the store itself
-- keeps one active run per fix.
ALTER TABLE jobs ADD COLUMN fix_id INTEGER;
UPDATE jobs SET fix_id = (SELECT fix_runs.fix_id FROM fix_runs WHERE fix_runs.job_id = jobs.id)
 WHERE kind = 'data-fix';

-- Stores made before these indexes may hold duplicates (the check-then-insert
-- this replaces could let two through): the older ones are cancelled.
UPDATE jobs SET state = 'cancelled', message = 'cancelled by the store migration: another relay of this migration was active'
 WHERE kind = 'relay' AND state IN ('queued', 'running', 'paused')
   AND EXISTS (SELECT 1 FROM jobs newer WHERE newer.kind = 'relay' AND newer.migration_id = jobs.migration_id
                 AND newer.state IN ('queued', 'running', 'paused') AND newer.id > jobs.id);
UPDATE jobs SET state = 'cancelled', message = 'cancelled by the store migration: another run of this fix was active'
 WHERE fix_id IS NOT NULL AND state IN ('queued', 'running', 'paused')
   AND EXISTS (SELECT 1 FROM jobs newer WHERE newer.fix_id = jobs.fix_id
                 AND newer.state IN ('queued', 'running', 'paused') AND newer.id > jobs.id);

-- One active (queued, running or paused) relay per migration, one active run
-- per fix: a second insert fails on these, however many requests race.
CREATE UNIQUE INDEX jobs_one_active_relay ON jobs (migration_id)
 WHERE kind = 'relay' AND state IN ('queued', 'running', 'paused');
CREATE UNIQUE INDEX jobs_one_active_fix_run ON jobs (fix_id)
 WHERE state IN ('queued', 'running', 'paused');
