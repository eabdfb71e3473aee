"""Where samples come from: serial ports, the MQTT broker and recorded files.

Every source runs in its own thread, hands decoded blocks to a callback (the pipeline's inbox)
and keeps the counts of its decoder: frames accepted, frames rejected by reason, sequence gaps.
"""

from collections.abc import Callable

from edgewatch.agent.framing import Block

Offer = Callable[[Block], bool]
