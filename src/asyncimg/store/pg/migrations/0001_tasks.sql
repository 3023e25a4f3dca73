-- Task records as rows: the whole record as JSONB (the source of truth, the same fields as
-- a task file), plus the columns the queue and the listings select on.
CREATE TABLE tasks (
    local_id     text PRIMARY KEY,
    task_id      text,
    status       text NOT NULL,
    machine      text NOT NULL,
    batch        text NOT NULL,
    priority     integer NOT NULL DEFAULT 0,
    account      text NOT NULL DEFAULT 'default',
    req_key      text NOT NULL,
    created_at   double precision NOT NULL,
    updated_at   double precision NOT NULL,
    version      bigint NOT NULL DEFAULT 1,
    seq          bigint NOT NULL,
    lease_owner  text,
    lease_until  timestamptz,
    slot_until   timestamptz,
    record       jsonb NOT NULL
);
CREATE SEQUENCE tasks_seq;
CREATE INDEX tasks_status ON tasks (status);
CREATE INDEX tasks_batch ON tasks (batch, created_at);
CREATE INDEX tasks_machine ON tasks (machine, status);
CREATE INDEX tasks_task_id ON tasks (task_id);
CREATE INDEX tasks_seq_idx ON tasks (seq);

-- What the monitors share per account and model: the in-flight cap learned from 50430
-- replies and the submit / poll paces (the next moment each may be used).
CREATE TABLE account_limits (
    account         text NOT NULL,
    req_key         text NOT NULL,
    cap             integer,
    learned         integer,
    probe_after     integer,
    next_submit_at  timestamptz NOT NULL DEFAULT now(),
    next_poll_at    timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, req_key)
);
