-- The migration page counts buckets per phase and the overview counts running jobs per migration.
CREATE INDEX buckets_phase_rows ON buckets (migration_id, phase, planned_rows, rows_copied);
CREATE INDEX jobs_migration_state ON jobs (migration_id, state);
