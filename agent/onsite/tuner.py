"""What changes a device's model after it has learned on site: its operators' labels and, for
a machine that adapts unattended, the windows it goes on to see. The work runs on the
learner's fitting thread (at once in a replay), and a new model goes through the learner into
place, or on trial.

A window labelled ``normal`` or ``anomaly`` is kept beside the device's baseline
(``agent.onsite.labelled``); a ``normal`` one re-fits the device (``agent.onsite.refit``), and
the model in use keeps scoring until the re-fit has passed its checks. An adapting device's
scored windows go to its ``Follower`` (``agent.onsite.adapt``), whose re-fits are learned from
the windows it keeps and those labelled normal, under the first fit's checks, and a level shift
it re-learns is reported as drift, ``adapted: true``.
"""

import logging
from collections import Counter
from functools import partial

import numpy as np

from edgewatch.agent.bundle import BundleError, Manifest
from edgewatch.agent.calibration import CalibrationError
from edgewatch.agent.drift import Drift, evidence
from edgewatch.agent.feedback import Labelled
from edgewatch.agent.machines import Route, device_of
from edgewatch.agent.model import Model
from edgewatch.agent.onsite import folders, labelled
from edgewatch.agent.onsite.adapt import Follower, Refit
from edgewatch.agent.onsite.baseline import Baseline
from edgewatch.agent.onsite.folders import folder_name
from edgewatch.agent.onsite.learn import LearningError, learn
from edgewatch.agent.onsite.learner import Learner
from edgewatch.agent.onsite.refit import RefitError, refit
from edgewatch.agent.parity import ParityError
from edgewatch.agent.streams import Part

log = logging.getLogger(__name__)
FitErrors = (LearningError, CalibrationError, ParityError, BundleError)


class Tuner:
    def __init__(self, learner: Learner, adapts: bool = False) -> None:
        """``adapts``: some machine adapts unattended."""
        self.learner, self.adapts = learner, adapts
        self._pending: Counter[str] = Counter()
        self._followers: dict[str, Follower] = {}

    def label(self, route: Route, given: Labelled) -> None:
        """An operator's label for a device that learns on site: the labelled windows are
        kept, and a ``normal`` label re-fits the device."""
        if given.label not in ("normal", "anomaly") or given.rows is None:
            return
        with self.learner.lock:
            self._pending[route.device] += 1
        self.learner.submit(partial(self._labelled, route, given))

    def follow(
        self,
        route: Route,
        part: Part,
        scores: np.ndarray,
        model: Model,
        open_since: float | None,
    ) -> None:
        """An adapting device's scored windows and the model that scored them (a re-fit when
        one is due)."""
        machine = route.machine
        assert machine is not None and machine.adapt is not None and machine.learn is not None
        if self.learner.collecting(route.device):
            return
        follower = self._followers.get(route.device)
        if follower is None:
            spec = machine.features
            assert spec is not None
            folder = self.learner.folder / folder_name(route.device)
            baseline = Baseline(folder, spec, machine.learn).matrix().copy()
            needed = machine.learn.rows_needed()
            follower = self._followers[route.device] = Follower(baseline, machine.adapt, needed)
        due = follower.take(part.ends, part.rows, scores, model.policy.warning, open_since)
        if due is not None:
            job = partial(self._adapt, route, due, float(part.ends[-1]), model.bundle.manifest)
            self.learner.submit(job)

    def forget(self, device: str) -> None:
        self._followers.pop(device, None)

    def settled(self, key: str, model: Model, promoted: bool) -> None:
        """The trial of a device's new model ended (``agent.shadow``)."""
        device = device_of(key)
        if device is None:
            return
        try:
            folders.settle(self.learner.folder / folder_name(device), model, promoted)
        except OSError as e:
            log.error("%s: the model on trial cannot be settled on disk: %s", device, e)

    def _labelled(self, route: Route, given: Labelled) -> None:
        machine = route.machine
        folder = self.learner.folder / folder_name(route.device)
        assert machine is not None and machine.features is not None and given.rows is not None
        with self.learner.lock:
            self._pending[route.device] -= 1
            last = self._pending[route.device] <= 0
            if last:
                del self._pending[route.device]
        if given.names != machine.features.feature_names:
            self._refused(route, "the labelled alert was raised on other features")
            return
        kind: labelled.Kind = "normal" if given.label == "normal" else "anomaly"
        try:
            labelled.add(folder, kind, given.rows)
        except OSError as e:
            self._refused(route, f"the labelled window cannot be kept: {e}")
            return
        if kind == "normal" and last and not self.learner.collecting(route.device):
            self.refit(route)

    def refit(self, route: Route) -> None:
        """Fit ``route``'s device again with its labels; the old model scores on if it fails."""
        machine = route.machine
        assert machine is not None
        folder = self.learner.folder / folder_name(route.device)
        try:
            done = refit(folder, machine, route.device, self.learner.threads)
            self.learner.adopt(route, done.model)
        except (RefitError, *FitErrors) as e:
            self._refused(route, str(e))
            return
        except OSError as e:
            self._refused(route, f"the re-fitted bundle cannot be written: {e}")
            return
        self.learner.fits["refit"] += 1
        log.info("%s re-fitted with %d windows labelled normal", route.device, done.normal)
        self.learner.report(done.event(route.device))

    def _refused(self, route: Route, why: str) -> None:
        self.learner.fits["refit_refused"] += 1
        log.error("%s: the re-fit is refused, the model in use scores on: %s", route.device, why)
        self.learner.report({"event": "refit_refused", "device": route.device, "reason": why})

    def _adapt(self, route: Route, due: Refit, ts: float, was: Manifest) -> None:
        machine = route.machine
        assert machine is not None and machine.learn is not None and machine.features
        folder = self.learner.folder / folder_name(route.device)
        try:
            normal = labelled.read(folder, "normal", len(machine.features.feature_names))
            learned = learn(
                due.rows,
                machine.features,
                machine.learn,
                name=route.device,
                normal=normal,
                fit_mask=due.fit,
            )
            model = folders.candidate(folder, learned, machine.decision, self.learner.threads)
            self.learner.adopt(route, model)
        except (*FitErrors, OSError) as e:
            self.learner.fits["adapt_failed"] += 1
            log.warning("%s: adapting failed, the model in use scores on: %s", route.device, e)
            return
        self.learner.fits["adapted"] += 1
        if due.shift_since is None:
            log.info("%s adapted to its latest %d windows", route.device, len(due.rows))
            return
        shift = evidence(was, due.rows.mean(axis=0, dtype=np.float64))
        drift = Drift(route.device, ts, len(due.rows), due.above, shift, adapted=True)
        log.warning("%s: a level shift since %.0f, re-learned", route.device, due.shift_since)
        self.learner.report(drift.event())
