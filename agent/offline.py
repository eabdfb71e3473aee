"""The gateway's stages on a recording: ``replay`` and ``learn``, to try edgewatch on data
before deploying it.

``replay`` plays a CSV or NPY file through the agent's own pipeline (``agent.assembly``): scored
with a bundle, or learning the device's normal on site from the first rows (``--learn N``) and
scoring the rest, adapting unattended as it goes with ``--adapt``. It prints alerts as JSON
lines, and with ``--scores`` each row's score too.
``--config`` takes the decision settings (and the ``[learn]`` and ``[features]`` of a machine)
from a small TOML file, or from a whole agent config. ``learn`` writes the bundle that on-site
learning would.
"""

import argparse
import json
import math
import sys
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import numpy as np
from pydantic import Field, ValidationError

from edgewatch.agent.calibration import MIN_CALIBRATION_ROWS
from edgewatch.agent.commands import fail, speed
from edgewatch.agent.config import ConfigError, validate
from edgewatch.agent.decision_settings import Decision, Settings
from edgewatch.agent.features import FeatureSpec
from edgewatch.agent.onsite.detectors import Kind
from edgewatch.agent.onsite.settings import MIN_FIT_ROWS, Adapting, Learning, rows_needed
from edgewatch.agent.schema import problems
from edgewatch.agent.table import TimeOrder

if TYPE_CHECKING:  # the command line loads the pipeline (and onnxruntime) only to replay
    from edgewatch.agent.bundle import Bundle
    from edgewatch.agent.pipeline import Round


class ReplaySettings(Settings):
    """A replay's ``--config``: the decision settings, and how to learn (and adapt) when it
    learns."""

    site: str = Field(default="replay", min_length=1, max_length=64)
    decision: Decision = Decision()
    learn: Learning | None = None
    features: FeatureSpec | None = None
    adapt: Adapting | None = None


def replay_settings(path: Path) -> ReplaySettings:
    """The settings in the file at ``path``; see ``parse_replay_settings``."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from None
    return parse_replay_settings(raw, str(path))


def parse_replay_settings(raw: bytes, name: str = "replay.toml") -> ReplaySettings:
    """The settings in ``raw``: a file of ``[decision]`` (``[learn]``, ``[features]``), or a
    whole agent config, whose decision and site it takes. ``ConfigError`` says what is wrong.

    >>> parse_replay_settings(b"[decision]\\nn = 2\\nm = 4\\n").decision.m
    4
    """
    try:
        data = tomllib.loads(raw.decode())
    except UnicodeDecodeError as e:
        raise ConfigError(f"{name}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as e:
        raise ConfigError(f"{name}: not valid TOML: {e}"[:300]) from None
    if "sources" in data:
        agent = validate(data)
        return ReplaySettings(site=agent.site, decision=agent.decision)
    try:
        return ReplaySettings.model_validate(data)
    except ValidationError as e:
        raise ConfigError("\n".join(f"{name}: {line}" for line in problems(e))) from None


def rows(text: str) -> slice:
    """``START:END`` (either may be left out) as a slice of rows.

    >>> rows("400:"), rows(":10")
    (slice(400, None, None), slice(None, 10, None))
    """
    start, sep, end = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return slice(int(start) if start else None, int(end) if end else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not START:END, e.g. 0:400") from None


def replay(args: argparse.Namespace) -> int:
    from edgewatch.agent.bundle import BundleError, load_public_key, verify_bundle
    from edgewatch.agent.sources.replay import RecordingError, load_recording, recording_channels
    from edgewatch.kernels import runtime

    if (args.bundle is None) == (args.learn is None):
        return fail("replay", "give either --bundle or --learn N")
    try:
        settings = replay_settings(args.config) if args.config else ReplaySettings()
        device = args.device or args.data.stem
        bundle, learn = None, None
        if args.bundle is not None:
            key = load_public_key(args.public_key) if args.public_key else None
            bundle = verify_bundle(args.bundle, key)
            spec = bundle.manifest.feature_spec
        else:
            channels = args.columns or recording_channels(args.data)
            spec = settings.features or FeatureSpec(kind="process", channels=channels)
            learn = _learning(settings, spec, args.learn, args.adapt)
        recording = load_recording(args.data, spec.channels, not args.even, args.time_order)
        start, end = _range(args.rows, args.prime, recording.samples.shape[1])
        times = recording.times
        rate = args.rate or spec.sample_rate or _rate(times)
        decision = settings.decision
        if args.prime:
            windows = args.prime // spec.hop + 1 if spec.hop else args.prime
            decision = decision.model_copy(
                update={"warmup_windows": decision.warmup_windows + windows}
            )
        first = args.start if args.start is not None or times is not None else 0.0
        source = {
            "device": device,
            "path": args.data,
            "channels": spec.channels,
            "sample_rate": rate,
            "speed": "max" if args.speed is None else args.speed,
            "start_ts": first,
            "timestamps": not args.even,
            "time_order": args.time_order,
            "rows": (start, end),
        }
        primed = (args.rows.start or 0) - start
        if times is not None and first is None:
            report_from = float(times[start + primed])
        else:
            report_from = (first or 0.0) + primed / rate
        return _play(settings.site, args, decision, source, bundle, learn, report_from)
    except (BundleError, RecordingError, ConfigError) as e:
        return fail("replay", str(e))
    finally:
        runtime.select(1)


def _play(
    site: str,
    args: argparse.Namespace,
    decision: Decision,
    source: dict[str, Any],
    bundle: "Bundle | None",
    learn: dict[str, Any] | None,
    report_from: float,
) -> int:
    """Replay ``source`` scored with the verified ``bundle``, or learning as ``learn`` says."""
    from edgewatch.agent.assembly import assemble, replaying
    from edgewatch.agent.model import Model

    with tempfile.TemporaryDirectory(prefix="edgewatch-learn-") as folder:
        if learn is not None:
            learn["learning_dir"] = Path(folder)
        config = replaying(site, args.bundle, decision, source, {"type": "stdout"}, learn)
        model = Model.load(bundle, decision) if bundle is not None else None
        parts = assemble(config, model, inline_learning=True)
        if parts.learns:
            parts.learner.report = _status
            # A block at a time: the baseline ends at the row it asks for, and the next is scored.
            parts.pipeline.max_batch = 1
        if args.scores:
            parts.pipeline.on_round = _printer(report_from)
        reader = parts.play()
        parts.pipeline.run(reader.done)
    print(
        f"edgewatch replay: {reader.samples.shape[1]} samples, "
        f"{int(parts.registry.value('windows_scored_total'))} scored, "
        f"{sum(parts.pipeline.dropped.values())} dropped",
        file=sys.stderr,
    )
    return 0


def _printer(since: float) -> "Callable[[Round], None]":
    """Prints each scored row (or window) that ends at ``since`` or later (the ones before
    only prime the streams) as ``{"device", "ts", "score"}``; the score is null for a row of
    an operating regime the model never saw."""

    def show(done: "Round") -> None:
        lines = [
            json.dumps(
                {
                    "device": part.device,
                    "ts": float(end),
                    "score": float(score) if np.isfinite(score) else None,
                }
            )
            for part, scores in zip(done.parts, done.scores, strict=True)
            for end, score in zip(part.ends, scores, strict=True)
            if end >= since
        ]
        if lines:
            print("\n".join(lines), flush=True)

    return show


def _status(event: dict[str, object]) -> None:
    print(f"edgewatch replay: {json.dumps(event)}", file=sys.stderr)


def _learning(
    settings: ReplaySettings, spec: FeatureSpec, baseline: int, adapt: bool
) -> dict[str, Any]:
    """The machine's learning: the config's ``[learn]``, else the first ``baseline`` rows (the
    first ``history`` of them only fill the rolling statistics), calibrated on their later
    share: 30 %, or more where it takes more to hold 50 rows. With ``adapt``, it adapts as
    the config's ``[adapt]`` says, or by default."""
    learn = settings.learn
    if learn is None:
        priming = spec.history if spec.kind == "process" and spec.history else 0
        learn = _first_rows(baseline - priming)
        if learn is None:
            least = next(n for n in range(1, 1000) if _first_rows(n) is not None) + priming
            raise ConfigError(
                f"--learn {baseline}: too few rows to learn from; it takes {least} at least"
            )
    machine = {"learn": learn.model_dump(), "features": spec.model_dump()}
    if adapt or settings.adapt is not None:
        machine["adapt"] = (settings.adapt or Adapting()).model_dump()
    return machine


def _first_rows(rows: int) -> Learning | None:
    """Learning from ``rows`` rows, calibrated on their later 30 %, or on more where it takes
    more to hold 50 rows; None when they are too few for any share."""
    share = min(0.7, max(0.3, (MIN_CALIBRATION_ROWS + 1) / max(rows, 1)))
    if rows < rows_needed(MIN_FIT_ROWS, share) or rows - math.ceil(rows * share) < MIN_FIT_ROWS:
        return None
    return Learning(min_rows=rows, duration_s=0, calibration=share)


def _range(chosen: slice, prime: int, n: int) -> tuple[int, int]:
    start = chosen.start or 0
    return max(0, start - prime), n if chosen.stop is None else min(chosen.stop, n)


def _rate(times: np.ndarray | None) -> float:
    """The sample rate of timed rows: one over their median spacing (1 Hz without times)."""
    if times is None or len(times) < 2:
        return 1.0
    step = float(np.median(np.diff(times)))
    return 1.0 / step if step > 0 else 1.0


def learn(args: argparse.Namespace) -> int:
    from edgewatch.agent.bundle import BundleError
    from edgewatch.agent.bundle_writer import write_bundle
    from edgewatch.agent.features import FeatureError
    from edgewatch.agent.featurizer import recording_features
    from edgewatch.agent.onsite.learn import LearningError
    from edgewatch.agent.onsite.learn import learn as learn_
    from edgewatch.agent.sources.replay import RecordingError, load_recording, recording_channels

    try:
        channels = args.columns or recording_channels(args.data)
        recording = load_recording(args.data, channels, time_order=args.time_order)
        samples = recording.samples.T[args.rows]
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


def _recording_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="a CSV or NPY recording")
    parser.add_argument(
        "--columns",
        type=lambda text: tuple(text.split(",")),
        help="the CSV's channels, comma-separated (default: every numeric column but times "
        "and labels)",
    )
    parser.add_argument("--rows", type=rows, default=slice(None), help="START:END of the file")
    parser.add_argument(
        "--time-order",
        choices=get_args(TimeOrder),
        default="error",
        help="a time that goes back: refuse the file, sort the rows, or drop the row",
    )


def add(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    replay_ = commands.add_parser(
        "replay", help="a recorded file through the agent's pipeline, alerts as JSON lines"
    )
    _recording_options(replay_)
    replay_.add_argument("--bundle", type=Path, help="score with this bundle")
    replay_.add_argument(
        "--learn", type=int, metavar="N", help="or learn on site from the first N rows"
    )
    replay_.add_argument("--scores", action="store_true", help="print every row's score too")
    replay_.add_argument(
        "--adapt",
        action="store_true",
        help="with --learn: adapt unattended afterwards (the config's [adapt], or the defaults)",
    )
    replay_.add_argument(
        "--prime", type=int, default=0, metavar="N",
        help="feed the N rows before --rows first, to fill the rolling state, unreported",
    )  # fmt: skip
    replay_.add_argument("--speed", type=speed, default=None, help="N times real time, or max")
    replay_.add_argument("--rate", type=float, help="sample rate (default: the model's, the "
                         "file's times', or 1 Hz)")  # fmt: skip
    replay_.add_argument(
        "--even", action="store_true", help="space rows at the rate, not by the file's times"
    )
    replay_.add_argument("--device", help="the device name (default: the file's stem)")
    replay_.add_argument(
        "--start", type=float, help="time of the first sample (s; default: the file's, or 0)"
    )
    replay_.add_argument(
        "--config", type=Path, help="[decision] (and [learn], [features]), or an agent config"
    )
    replay_.add_argument("--public-key", type=Path, help="require a bundle signed for this key")
    replay_.set_defaults(handler=replay)

    learn_ = commands.add_parser(
        "learn", help="learn a machine's normal from a recording, as the agent does on site"
    )
    _recording_options(learn_)
    learn_.add_argument("-o", "--out", type=Path, required=True, help="the bundle to write")
    learn_.add_argument(
        "--features", type=Path, help="a TOML feature spec (default: process, rolling stats)"
    )
    learn_.add_argument("--detector", choices=get_args(Kind), default="gaussian")
    learn_.add_argument(
        "--calibration", type=float, default=0.3, help="the later share held back to calibrate"
    )
    learn_.add_argument("--name", help="the model's name (default: the file's stem)")
    learn_.set_defaults(handler=learn)
