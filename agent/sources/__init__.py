"""Where samples come from: serial ports, the MQTT broker and recorded files.

Every source runs in its own thread, hands decoded blocks to a callback (the pipeline's inbox)
and keeps the counts of its decoder: frames accepted, frames rejected by reason, sequence gaps.
"""

from collections.abc import Callable

from edgewatch.agent.framing import Block, Counts
from edgewatch.agent.metrics import Registry

Offer = Callable[[Block], bool]


class DecoderMetrics:
    """The decoders' counts of every source, labelled by source, as metrics."""

    def __init__(self, registry: Registry) -> None:
        self._counted: list[tuple[str, Counts]] = []
        for name, help, read in (
            ("frames_accepted_total", "Frames decoded", lambda c: c.accepted),
            (
                "frames_garbage_bytes_total",
                "Bytes skipped between frames",
                lambda c: c.garbage_bytes,
            ),
            ("sequence_gaps_total", "Frame sequence numbers missed", lambda c: c.gaps),
        ):
            registry.collect("counter", name, help, ("source",), self._by_source(read))
        registry.collect(
            "counter",
            "frames_rejected_total",
            "Frames refused by the decoder",
            ("source", "reason"),
            lambda: {
                (name, reason): float(n)
                for name, counts in self._counted
                for reason, n in counts.rejected.items()
            },
        )

    def add(self, name: str, counts: Counts) -> None:
        self._counted.append((name, counts))

    def _by_source(
        self, read: Callable[[Counts], int]
    ) -> Callable[[], dict[tuple[str, ...], float]]:
        return lambda: {(name,): float(read(counts)) for name, counts in self._counted}
