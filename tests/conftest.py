"""Settings for the whole suite."""

from __future__ import annotations

import signal

# A suite started in the background (`make test &`, some CI runners) inherits SIGINT ignored,
# and every program it starts would too: the tests that press Ctrl+C on a child would then
# wait for nothing. Children of this process get the default back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
