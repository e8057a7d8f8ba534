"""Remote machines: OpenSSH transport (ssh), the agent's packaging and install (agent) and
the JSON-RPC client that talks to the agent over an ssh stdio channel (link).

The agent is this package itself, copied once per version to the machine and run there as
``python3 -m gpu_workbench``; everything here is standard library only.
"""

from __future__ import annotations
