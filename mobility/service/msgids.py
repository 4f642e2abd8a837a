"""journald MESSAGE_ID values, one per kind of log line (128-bit, fixed forever)."""

DAEMON_STARTED = "5b0f1a3e6c2d4e8f9a7b1c0d2e3f4a51"
DAEMON_STOPPING = "5b0f1a3e6c2d4e8f9a7b1c0d2e3f4a52"
CONFIG_RELOADED = "5b0f1a3e6c2d4e8f9a7b1c0d2e3f4a53"
SA_ADDED = "5b0f1a3e6c2d4e8f9a7b1c0d2e3f4a54"
SA_REMOVED = "5b0f1a3e6c2d4e8f9a7b1c0d2e3f4a55"
PACKET_DROPPED = "5b0f1a3e6c2d4e8f9a7b1c0d2e3f4a56"
