"""mobiled daemon: the mobile node (IKEv2 initiator, MIPv6/MIPv4 registration, handover keys).

The service layer is complete; the protocol engines arrive with their issues (see the tracker).
"""

from __future__ import annotations

from mobility.service.shell import ServiceShell


class MobiledDaemon(ServiceShell):
    ROLE = "mobile node (IKEv2 initiator, MIPv6/MIPv4 registration, handover keys)"
