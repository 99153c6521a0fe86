"""The network model: links, max-min fair sharing, bandwidth traces and the TCP window.

``links`` holds a device's access link and its directions; ``flows`` the flow-level
sharing (``fairshare`` solves it); ``tcp`` adds TCP's congestion window (handshake, slow
start, restart after idle, HyStart) for the ``tcp`` transport, and ``burst`` the loss of a
burst beyond the bottleneck's buffer and its recovery; ``timing`` times single messages
and exchanges on one link (``time_messages``).
"""

from ecofed_sim.network.fairshare import max_min_rates
from ecofed_sim.network.flows import Flow, Network
from ecofed_sim.network.links import MBPS, Capacity, DeviceLink, wire_bytes
from ecofed_sim.network.tcp import BITS_PER_BYTE, TcpParams
from ecofed_sim.network.timing import time_messages

__all__ = ["BITS_PER_BYTE", "MBPS", "Capacity", "DeviceLink", "Flow", "Network", "TcpParams",
           "max_min_rates", "time_messages", "wire_bytes"]
