"""The runtime's commands: ``run``, ``replay``, ``learn``, ``warmup`` and ``feedback export``.

Each handler parses nothing itself (argparse has done that), turns the user's mistakes into one
line on stderr and an exit status of 2, and imports what it needs only when it runs.
"""

import argparse
import sys
import time
import tomllib
from pathlib import Path
from typing import get_args

from pydantic import ValidationError

from edgewatch.agent.config import AgentConfig, ConfigError, load_config
from edgewatch.agent.decision_settings import Decision
from edgewatch.agent.onsite.detectors import Kind


def fail(command: str, message: str) -> int:
    for line in message.splitlines():
        print(f"edgewatch {command}: {line}", file=sys.stderr)
    return 2


def _config(command: str, path: Path) -> AgentConfig | int:
    try:
        return load_config(path)
    except ConfigError as e:
        return fail(command, "\n".join(f"{path}: {line}" for line in str(e).splitlines()))


def run(args: argparse.Namespace) -> int:
    from edgewatch.agent import logs
    from edgewatch.agent.bundle import BundleError
    from edgewatch.agent.preflight import problems
    from edgewatch.agent.service import Agent
    from edgewatch.agent.sources.replay import RecordingError

    config = _config("run", args.config)
    if isinstance(config, int):
        return config
    found = problems(config)
    if found:
        return fail("run", "\n".join(f"{args.config}: {line}" for line in found))
    logs.setup(config.log_level)
    try:
        agent = Agent(config)
    except (BundleError, RecordingError, OSError) as e:
        return fail("run", str(e))
    return agent.run()


def speed(text: str) -> float | None:
    if text == "max":
        return None
    value = float(text)
    if not 0 < value <= 10_000:
        raise argparse.ArgumentTypeError("speed must be above 0 and at most 10000, or max")
    return value


def replay(args: argparse.Namespace) -> int:
    from edgewatch.agent.assembly import assemble, replaying
    from edgewatch.agent.bundle import BundleError, load_public_key, verify_bundle
    from edgewatch.agent.model import Model
    from edgewatch.agent.sources.replay import RecordingError
    from edgewatch.kernels import runtime

    decision, site = Decision(), "replay"
    if args.config is not None:
        config = _config("replay", args.config)
        if isinstance(config, int):
            return config
        decision, site = config.decision, config.site
    try:
        key = load_public_key(args.public_key) if args.public_key else None
        bundle = verify_bundle(args.bundle, key)
        spec = bundle.manifest.feature_spec
        source = {
            "device": args.device or args.data.stem,
            "path": args.data,
            "channels": spec.channels,
            "sample_rate": args.rate or spec.sample_rate or 1.0,
            "speed": "max" if args.speed is None else args.speed,
            "start_ts": args.start,
        }
        config = replaying(site, args.bundle, decision, source, {"type": "stdout"})
        runtime.select(1)
        parts = assemble(config, Model.load(bundle, decision))
    except (BundleError, RecordingError, ConfigError) as e:
        return fail("replay", str(e))
    reader = parts.play()
    parts.pipeline.run(reader.done)
    print(
        f"edgewatch replay: {reader.samples.shape[1]} samples, "
        f"{int(parts.registry.value('windows_scored_total'))} scored, "
        f"{sum(parts.pipeline.dropped.values())} dropped",
        file=sys.stderr,
    )
    return 0


def rows(text: str) -> slice:
    """``START:END`` (either may be left out) as a slice of rows."""
    start, sep, end = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return slice(int(start) if start else None, int(end) if end else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not START:END, e.g. 0:400") from None


def learn(args: argparse.Namespace) -> int:
    import numpy as np

    from edgewatch.agent.bundle import BundleError
    from edgewatch.agent.bundle_writer import write_bundle
    from edgewatch.agent.features import FeatureError, FeatureSpec
    from edgewatch.agent.featurizer import recording_features
    from edgewatch.agent.onsite.learn import LearningError
    from edgewatch.agent.onsite.learn import learn as learn_
    from edgewatch.agent.onsite.settings import Learning
    from edgewatch.agent.schema import problems
    from edgewatch.agent.sources.replay import RecordingError, load_recording, recording_channels

    try:
        channels = args.columns or recording_channels(args.data)
        samples = load_recording(args.data, channels).T[args.rows]
        table = tomllib.loads(args.features.read_text()) if args.features else {}
        spec = FeatureSpec.model_validate({"kind": "process", "channels": channels, **table})
        settings = Learning(detector=args.detector, calibration=args.calibration)
        baseline = recording_features(spec, np.ascontiguousarray(samples))
        learned = learn_(baseline, spec, settings, name=args.name or args.data.stem)
        write_bundle(args.out, learned.manifest, learned.files)
    except ValidationError as e:
        return fail("learn", "\n".join(problems(e, root=str(args.features or "features"))))
    except (RecordingError, FeatureError, LearningError, BundleError, OSError) as e:
        return fail("learn", str(e))
    except tomllib.TOMLDecodeError as e:
        return fail("learn", f"{args.features}: not valid TOML: {e}")
    for note in learned.notes:
        print(f"edgewatch learn: warning: {note}", file=sys.stderr)
    m = learned.manifest
    t = m.thresholds
    print(
        f"edgewatch learn: {m.model.kind} on {m.training.rows['train']} rows of "
        f"{len(m.feature_names)} features, calibrated on the next {t.normal_rows}; "
        f"warning {t.warning:.2f} (expected {t.expected_warning_far:.2%} of normal windows, "
        f"{t.warning_far:.2%} of the calibration rows), critical {t.critical:.2f} (expected "
        f"{t.expected_critical_far:.2%}, {t.critical_far:.2%}): {args.out}"
    )
    return 0


def warmup(args: argparse.Namespace) -> int:
    import numpy as np

    from edgewatch.agent.features import Bearing, FeatureSpec
    from edgewatch.agent.featurizer import Featurizer
    from edgewatch.kernels import native
    from edgewatch.kernels.cache import cache_dir

    began = time.perf_counter()
    # Any bearing compiles the same kernels: its geometry is an argument, not a constant.
    bearing = Bearing(balls=9, ball_diameter=7.94, pitch_diameter=39.04)
    specs = [
        FeatureSpec(
            kind="waveform",
            sample_rate=25600,
            window=1024,
            channels=["x"],
            bearing=bearing,
            shaft_hz=30.0,
        ),
        FeatureSpec(kind="process", channels=["a"]),
    ]
    noise = np.random.default_rng(0).normal(size=(2, 1, 1024)).astype(np.float32)
    for spec in specs:
        featurizer = Featurizer(spec)
        if spec.kind == "waveform":
            featurizer(noise[:1])
            featurizer(noise)
        else:
            featurizer(noise[0, :, :8].T.copy())
    seconds = time.perf_counter() - began
    print(f"edgewatch warmup: JIT kernels ready in {seconds:.2f} s ({cache_dir()})")
    began = time.perf_counter()
    try:
        path = native.build()
    except native.Unavailable as e:
        print(
            f"edgewatch warmup: warning: {e}\n"
            "edgewatch warmup: warning: the agent will run the JIT kernels instead, which keep "
            "Numba and LLVM in its memory: about 110 MB more than the native kernels",
            file=sys.stderr,
        )
        return 0
    print(f"edgewatch warmup: native kernels ready in {time.perf_counter() - began:.2f} s ({path})")
    return 0


def feedback_export(args: argparse.Namespace) -> int:
    from edgewatch.agent.feedback import FeedbackStore

    path = args.db
    if args.config is not None:
        config = _config("feedback export", args.config)
        if isinstance(config, int):
            return config
        path = config.feedback_db
    if not path.exists():
        return fail("feedback export", f"{path}: no feedback database")
    count = FeedbackStore(path).export(args.out)
    print(f"edgewatch feedback export: {count} labelled alerts to {args.out}", file=sys.stderr)
    return 0


def add(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    run_ = commands.add_parser("run", help="run the agent")
    run_.add_argument("--config", type=Path, required=True, help="the agent config (TOML)")
    run_.set_defaults(handler=run)

    replay_ = commands.add_parser(
        "replay", help="a recorded file through the agent's pipeline, alerts as JSON lines"
    )
    replay_.add_argument("--bundle", type=Path, required=True)
    replay_.add_argument("--data", type=Path, required=True, help="a CSV or NPY recording")
    replay_.add_argument("--speed", type=speed, default=None, help="N times real time, or max")
    replay_.add_argument("--rate", type=float, help="sample rate (default: the model's, or 1 Hz)")
    replay_.add_argument("--device", help="the device name (default: the file's stem)")
    replay_.add_argument("--start", type=float, default=0.0, help="time of the first sample (s)")
    replay_.add_argument("--config", type=Path, help="take decision settings and site from it")
    replay_.add_argument("--public-key", type=Path, help="require a bundle signed for this key")
    replay_.set_defaults(handler=replay)

    learn_ = commands.add_parser(
        "learn", help="learn a machine's normal from a recording, as the agent does on site"
    )
    learn_.add_argument("--data", type=Path, required=True, help="a CSV or NPY recording")
    learn_.add_argument("-o", "--out", type=Path, required=True, help="the bundle to write")
    learn_.add_argument(
        "--columns",
        type=lambda text: tuple(text.split(",")),
        help="the CSV's channels, comma-separated (default: every numeric column but times "
        "and labels)",
    )
    learn_.add_argument("--rows", type=rows, default=slice(None), help="START:END of the file")
    learn_.add_argument(
        "--features", type=Path, help="a TOML feature spec (default: process, rolling stats)"
    )
    learn_.add_argument("--detector", choices=get_args(Kind), default="gaussian")
    learn_.add_argument(
        "--calibration", type=float, default=0.3, help="the later share held back to calibrate"
    )
    learn_.add_argument("--name", help="the model's name (default: the file's stem)")
    learn_.set_defaults(handler=learn)

    warm = commands.add_parser(
        "warmup", help="compile the kernels: the JIT cache, and the native module the agent runs"
    )
    warm.set_defaults(handler=warmup)

    feedback = commands.add_parser("feedback", help="operator labels")
    actions = feedback.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = actions.add_parser("export", help="labelled alerts with their features, as CSV")
    export.add_argument("--out", type=Path, required=True)
    export.add_argument("--config", type=Path, help="the agent config naming the database")
    export.add_argument(
        "--db",
        type=Path,
        default=Path("/var/lib/edgewatch/feedback.sqlite"),
        help="or the database",
    )
    export.set_defaults(handler=feedback_export)
