"""Protocol constants and tuning numbers, all in one place (spec §1, §6)."""

from __future__ import annotations

DEFAULT_ENDPOINT = "https://visual.volcengineapi.com"
API_VERSION = "2022-08-31"
REGION = "cn-north-1"
SERVICE = "cv"
ACTION_SUBMIT = "CVSync2AsyncSubmitTask"
ACTION_GET_RESULT = "CVSync2AsyncGetResult"
# Cancel a task still `in_queue` (research §5: the SDK's action list, its own version).
ACTION_CANCEL = "CVCancelTask"
CANCEL_API_VERSION = "2024-06-06"
ACTION_VERSIONS = {
    ACTION_SUBMIT: API_VERSION,
    ACTION_GET_RESULT: API_VERSION,
    ACTION_CANCEL: CANCEL_API_VERSION,
}
SUCCESS_CODE = 10000

ENV_ENDPOINT = "ASYNCIMG_ENDPOINT"
ENV_ACCESS_KEY = "VOLC_ACCESSKEY"
ENV_SECRET_KEY = "VOLC_SECRETKEY"
ENV_SESSION_TOKEN = "VOLC_SESSION_TOKEN"

DEFAULT_REQ_KEY = "jimeng_t2i_v40"

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0
# A submit carries up to 10 base64 references (tens of MB) and a timeout after sending is
# an unknown outcome (maybe a billed task): give it far longer than a poll.
SUBMIT_READ_TIMEOUT_S = 180.0

# Unknown submit outcomes (no reply, timeout after sending) are resubmitted automatically at
# most this many times per frame; each may bill a second task.
DEFAULT_MAX_UNCONFIRMED_RESUBMITS = 1
# Results are kept by the service about 12 h after submission (spec §6).
RESULT_RETENTION_S = 12 * 3600.0

# Automatic retries inside the client (only for calls that are safe to repeat).
CLIENT_MAX_ATTEMPTS = 3
RETRY_BASE_DELAY_S = 0.5
RETRY_MAX_DELAY_S = 8.0

# The gateway rejects an X-Date more than this far from its clock (spec §5: InvalidTimestamp).
MAX_CLOCK_SKEW_S = 15 * 60

# Check/monitor defaults (the guide: every 30 s).
DEFAULT_INTERVAL_S = 30.0
# The shortest interval between passes a user may ask for: shorter polls in a tight loop.
MIN_INTERVAL_S = 1.0
DEFAULT_POLL_CONCURRENCY = 8
DEFAULT_TASKS_DIR = "async_tasks"
