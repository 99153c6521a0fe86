"""The network model: links, max-min fair sharing, bandwidth traces and the TCP window.

``flows`` holds the links and the flow-level sharing; ``tcp`` adds TCP's congestion
window (handshake, slow start, restart after idle) for the ``tcp`` transport; ``timing``
times single messages and exchanges on one link (``time_messages``).
"""

from ecofed_sim.network.fairshare import max_min_rates
from ecofed_sim.network.flows import (
    BITS_PER_BYTE,
    MBPS,
    Capacity,
    DeviceLink,
    Flow,
    Network,
    wire_bytes,
)
from ecofed_sim.network.tcp import TcpParams
from ecofed_sim.network.timing import time_messages

__all__ = ["BITS_PER_BYTE", "MBPS", "Capacity", "DeviceLink", "Flow", "Network", "TcpParams",
           "max_min_rates", "time_messages", "wire_bytes"]
