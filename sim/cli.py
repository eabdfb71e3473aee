"""``edgewatch simulate``: a simulated machine sent to MQTT, a serial port or a file, as a
sensor would send it. Registered through the ``edgewatch.commands`` entry point."""

import argparse
import sys
import time

from edgewatch.agent.commands import fail, speed


def _fault(text: str) -> object:
    from pydantic import ValidationError

    from edgewatch.agent.schema import problems
    from edgewatch.sim.machine import Fault

    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise argparse.ArgumentTypeError(f"{text}: expected KIND:START:END[:SEVERITY]")
    fields = dict(zip(("kind", "start", "end", "severity"), parts, strict=False))
    try:
        return Fault.model_validate(fields)
    except ValidationError as e:
        raise argparse.ArgumentTypeError(
            f"{text}: {'; '.join(problems(e, root='fault'))}"
        ) from None


def _ramp(text: str) -> tuple[float, float]:
    """``TIME:SHAFT_HZ``: the shaft reaches that speed at that time, linearly from before."""
    try:
        at, hz = (float(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: give TIME:SHAFT_HZ, two numbers") from None
    return at, hz


def simulate(args: argparse.Namespace) -> int:
    from edgewatch.sim.emit import Blocks, TargetError, send
    from edgewatch.sim.machine import (
        PROCESS_CHANNELS,
        Machine,
        simulate_process,
        simulate_waveform,
    )

    waveform = args.kind == "waveform"
    rate = args.rate or (25600.0 if waveform else 1.0)
    try:
        if waveform:
            machine = Machine(speed_changes=tuple(args.ramp))
            run = simulate_waveform(
                machine, args.duration, rate, args.seed, args.fault, args.channels, args.tachometer
            )
            names = ("x", "y", "z")[: args.channels] + (("tach",) if args.tachometer else ())
        else:
            run = simulate_process(args.duration, args.seed, args.fault, rate)
            names = PROCESS_CHANNELS
    except ValueError as e:
        return fail("simulate", str(e))
    blocks = Blocks(
        args.device, names, rate, run.signal, max(1, round(rate * args.block)), time.time()
    )
    try:
        count, unit = send(args.to, blocks, args.format, args.speed, args.baudrate)
    except TargetError as e:
        return fail("simulate", str(e))
    print(f"edgewatch simulate: {count} {unit} to {args.to}", file=sys.stderr)
    return 0


def add_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    sim = commands.add_parser("simulate", help="send a simulated machine to MQTT, serial or a file")
    sim.add_argument("--to", required=True, help="mqtt://HOST:PORT/TOPIC, serial:/dev/ttyX or FILE")
    sim.add_argument("--kind", choices=("waveform", "process"), default="waveform")
    sim.add_argument("--duration", type=float, default=60.0, help="seconds of signal")
    sim.add_argument("--rate", type=float, help="sample rate (25600 for waveform, 1 for process)")
    sim.add_argument("--channels", type=int, default=3, choices=(1, 2, 3), help="waveform axes")
    sim.add_argument(
        "--fault", type=_fault, action="append", default=[], help="KIND:START:END[:SEVERITY]"
    )
    sim.add_argument("--device", default="sim", help="the device name in each block")
    sim.add_argument(
        "--tachometer", type=int, default=0, metavar="PULSES", help="a tach channel, pulses a turn"
    )
    sim.add_argument(
        "--ramp", type=_ramp, action="append", default=[], help="TIME:SHAFT_HZ, a speed to reach"
    )
    sim.add_argument("--format", choices=("json", "binary", "csv"), default="binary")
    sim.add_argument("--speed", type=speed, default=1.0, help="N times real time, or max")
    sim.add_argument("--block", type=float, default=0.1, help="seconds of signal per block")
    sim.add_argument("--baudrate", type=int, default=115200)
    sim.add_argument("--seed", type=int, default=0)
    sim.set_defaults(handler=simulate)
