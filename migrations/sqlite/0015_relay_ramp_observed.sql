-- The relay ramp a running relay filters by, as it took it before a batch
-- (JSON of the ramp): a catch-up of a bucket the requested ramp covers waits
-- until the relay covers it too, so no change falls between the two.
ALTER TABLE relay_observed ADD COLUMN ramp TEXT;
