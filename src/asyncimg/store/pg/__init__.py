"""The shared PostgreSQL store: records as rows, leases, the account's shared limits."""
