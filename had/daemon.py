"""had daemon: the home agent (MIPv6/MIPv4 bindings, RFC 5026 bootstrapping, IKEv2 responder).

The service layer is complete; the protocol engines arrive with their issues (see the tracker).
"""

from __future__ import annotations

from mobility.service.shell import ServiceShell


class HadDaemon(ServiceShell):
    ROLE = "home agent (MIPv6/MIPv4 bindings, RFC 5026 bootstrapping, IKEv2 responder)"
