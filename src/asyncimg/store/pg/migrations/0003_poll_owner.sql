-- One monitor polls each task (the first to poll it), renewing its claim at every poll;
-- another takes over when the claim lapses (its monitor died).
ALTER TABLE tasks ADD COLUMN poll_owner text;
ALTER TABLE tasks ADD COLUMN poll_until timestamptz;
