"""ard daemon: the access router (SEND, RFC 5269 handover keys, FBU verification).

The service layer is complete; the protocol engines arrive with their issues (see the tracker).
"""

from __future__ import annotations

from mobility.service.shell import ServiceShell


class ArdDaemon(ServiceShell):
    ROLE = "access router (SEND, RFC 5269 handover keys, FBU verification)"
