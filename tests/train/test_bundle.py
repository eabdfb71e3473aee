"""Bundles: written, verified, and refused when anything in them was changed."""

import json
import subprocess
import tarfile

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sklearn.ensemble import IsolationForest

from edgewatch.agent.bundle import BundleError, load_public_key, verify_bundle
from edgewatch.agent.bundle_writer import digest, write_bundle
from edgewatch.agent.scorer import Scorer
from edgewatch.export.bundle import load_private_key
from edgewatch.export.config import parse_config
from edgewatch.export.detectors.forest import compact_forest
from edgewatch.export.train import MODEL_FILE, fit, load_data
from tests.train.make_bundles import PROCESS_MODEL

CONFIG = PROCESS_MODEL.format(kind="pca_t2q", extra="")


@pytest.fixture(scope="module")
def trained():
    config = parse_config(CONFIG)
    return fit(config, load_data(config))


@pytest.fixture
def bundle_dir(tmp_path, trained):
    write_bundle(tmp_path / "b", trained.manifest, {MODEL_FILE: trained.model.SerializeToString()})
    return tmp_path / "b"


def keypair(tmp_path):
    private = tmp_path / "key.pem"
    public = tmp_path / "key.pub"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", private], check=True)
    subprocess.run(["openssl", "pkey", "-in", private, "-pubout", "-out", public], check=True)
    return load_private_key(private), load_public_key(public)


def test_a_written_bundle_verifies_and_scores(bundle_dir, trained):
    bundle = verify_bundle(bundle_dir)
    assert bundle.manifest == trained.manifest and not bundle.signed
    rows = np.random.default_rng(0).normal(size=(5, 24)).astype(np.float32)
    scores = Scorer(bundle)(rows)
    assert scores.raw.shape == (5,) and scores.feature_error.shape == (5, 24)
    np.testing.assert_allclose(scores.calibrated, bundle.manifest.score(scores.raw))


def test_a_changed_byte_in_the_model_is_refused(bundle_dir):
    model = bundle_dir / MODEL_FILE
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 1
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model\.onnx does not match its sha256"):
        verify_bundle(bundle_dir)


def test_a_changed_manifest_is_refused_by_the_signature(tmp_path, trained):
    private, public = keypair(tmp_path)
    out = tmp_path / "signed"
    write_bundle(out, trained.manifest, {MODEL_FILE: trained.model.SerializeToString()}, private)
    assert verify_bundle(out, public).signed
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["thresholds"]["warning"] = 9.0
    manifest["thresholds"]["critical"] = 9.5
    (out / "manifest.json").write_text(json.dumps(manifest))
    verify_bundle(out)
    with pytest.raises(BundleError, match="signature does not match"):
        verify_bundle(out, public)


def test_a_signature_from_another_key_or_none_is_refused(tmp_path, bundle_dir, trained):
    _, public = keypair(tmp_path)
    with pytest.raises(BundleError, match="not signed"):
        verify_bundle(bundle_dir, public)
    other = Ed25519PrivateKey.generate()
    out = tmp_path / "other"
    write_bundle(out, trained.manifest, {MODEL_FILE: trained.model.SerializeToString()}, other)
    with pytest.raises(BundleError, match="signature does not match"):
        verify_bundle(out, public)


def test_a_tar_bundle_verifies_and_a_tampered_one_does_not(tmp_path, trained):
    _, public = keypair(tmp_path)
    private = Ed25519PrivateKey.generate()
    out = tmp_path / "b.tar"
    write_bundle(out, trained.manifest, {MODEL_FILE: trained.model.SerializeToString()}, private)
    assert verify_bundle(out, private.public_key()).signed
    with tarfile.open(out) as tar:
        at = tar.getmember(MODEL_FILE).offset_data + 100
    data = bytearray(out.read_bytes())
    data[at] ^= 0xFF
    out.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model\.onnx does not match its sha256"):
        verify_bundle(out, private.public_key())
    with pytest.raises(BundleError, match="signature does not match"):
        verify_bundle(out, public)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: (d / "extra.bin").write_bytes(b"x"), "extra.bin not listed"),
        (lambda d: (d / MODEL_FILE).unlink(), "missing model.onnx"),
        (lambda d: (d / "manifest.json").unlink(), "no manifest.json"),
        (lambda d: (d / "manifest.json").write_text("{"), "not valid JSON"),
        (lambda d: (d / "sub").mkdir(), "sub is not a regular file"),
    ],
)
def test_extra_missing_and_broken_files_are_refused(bundle_dir, change, message):
    change(bundle_dir)
    with pytest.raises(BundleError, match=message):
        verify_bundle(bundle_dir)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.update(schema_version=2), "schema_version"),
        (lambda m: m["feature_names"].reverse(), "feature_names differ"),
        (lambda m: m["thresholds"].update(critical=-1.0), "critical threshold"),
        (lambda m: m["score"].update(raw=m["score"]["raw"][::-1]), "strictly increasing"),
        (lambda m: m["model"]["input"].update(shape=[None, 3]), "takes 3 features"),
        (lambda m: m["model"].update(outputs=[]), "outputs"),
        (lambda m: m.update(surprise=1), "surprise: Extra inputs"),
        (lambda m: m["files"].update({"../etc": "0" * 64}), "files"),
    ],
)
def test_inconsistent_manifests_are_refused_with_the_field(bundle_dir, edit, message):
    path = bundle_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=message):
        verify_bundle(bundle_dir)


def test_tar_members_outside_the_top_level_are_refused(tmp_path):
    out = tmp_path / "evil.tar"
    with tarfile.open(out, "w") as tar:
        info = tarfile.TarInfo("../manifest.json")
        tar.addfile(info)
    with pytest.raises(BundleError, match="not a single regular file"):
        verify_bundle(out)
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(BundleError, match="not a readable tar"):
        verify_bundle(tmp_path / "junk.tar")


def test_a_model_that_is_not_what_the_manifest_says_is_refused(tmp_path, trained):
    forest = IsolationForest(n_estimators=5).fit(np.zeros((20, 24), np.float32))
    other = compact_forest(forest, 24).SerializeToString()
    manifest = trained.manifest.model_copy(update={"files": {MODEL_FILE: digest(other)}})
    bundle = write_bundle(tmp_path / "b", manifest, {MODEL_FILE: other})
    with pytest.raises(BundleError, match="no output 'feature_error'"):
        Scorer(bundle)


def test_keys_that_are_not_ed25519_are_refused(tmp_path):
    rsa = tmp_path / "rsa.pem"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "rsa", "-out", rsa], check=True, capture_output=True
    )
    with pytest.raises(BundleError, match="not an Ed25519 key"):
        load_private_key(rsa)
    (tmp_path / "garbage.pub").write_text("hello")
    with pytest.raises(BundleError, match="not an Ed25519 key"):
        load_public_key(tmp_path / "garbage.pub")
