-- The shared cap is one AIMD state for the account: every monitor's completions count
-- toward the next probe, not each monitor's alone.
ALTER TABLE account_limits ADD COLUMN clean integer NOT NULL DEFAULT 0;
