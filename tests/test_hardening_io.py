"""Hardening of checkpoints and atomic saves (issue 11, items 12 and 14)."""

import os
import signal
import stat

import pytest
import torch

import greybox as gb
from greybox import _io
from greybox.errors import SaveError

RULES = "input x: real  output y: bool  rule r: x > ~1 -> y"


@pytest.fixture
def model():
    model = gb.GreyBox(RULES, semantics="product")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g))
    return model


def _same(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return (a.kb == b.kb and a.semantics == b.semantics and a.temperature == b.temperature
            and sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa))


def test_a_flipped_byte_anywhere_is_refused_or_harmless(tmp_path, model):
    path = tmp_path / "m.pt"
    model.save(path)
    raw = path.read_bytes()
    bad = tmp_path / "bad.pt"
    silent, refused = [], 0
    for pos in range(0, len(raw), 3):
        flipped = bytearray(raw)
        flipped[pos] ^= 0xFF
        bad.write_bytes(bytes(flipped))
        try:
            loaded = gb.load(bad)
        except gb.CheckpointError:
            refused += 1
            continue
        if not _same(loaded, model):
            silent.append(pos)
    assert silent == [], f"flips at {silent} load as a different model"
    assert refused > 0


def _doctor(tmp_path, model, change):
    """A checkpoint whose payload was changed after saving, without a digest (as files
    written before the digest existed), so only the other checks can catch it."""
    path = tmp_path / "m.pt"
    model.save(path)
    payload = torch.load(path, weights_only=True)
    change(payload)
    payload.pop("sha256", None)
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("name,value", [
    ("rules.r.thresholds.0", float("nan")),
    ("rules.r.weight", float("inf")),
    ("feature_scale", float("-inf")),
])
def test_non_finite_tensors_are_refused_naming_them(tmp_path, model, name, value):
    path = _doctor(tmp_path, model, lambda p: p["state"][name].fill_(value))
    with pytest.raises(gb.CheckpointError, match=f"tensor '{name}' holds"):
        gb.load(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, "0.1", True])
def test_a_bad_temperature_is_refused(tmp_path, model, value):
    path = _doctor(tmp_path, model, lambda p: p.__setitem__("temperature", value))
    with pytest.raises(gb.CheckpointError, match="temperature must be a finite positive"):
        gb.load(path)


@pytest.mark.parametrize("value,match", [
    (5, "state entry 'rules.r.weight' is a int, not a tensor"),
    ("w", "state entry 'rules.r.weight' is a str, not a tensor"),
])
def test_a_malformed_state_entry_is_a_checkpoint_error(tmp_path, model, value, match):
    path = _doctor(tmp_path, model, lambda p: p["state"].__setitem__("rules.r.weight", value))
    with pytest.raises(gb.CheckpointError, match=match):
        gb.load(path)


def test_a_payload_changed_after_saving_fails_its_digest(tmp_path, model):
    path = tmp_path / "m.pt"
    model.save(path)
    payload = torch.load(path, weights_only=True)
    payload["state"]["rules.r.weight"].fill_(3.0)
    torch.save(payload, path)          # a valid archive, but not what was saved
    with pytest.raises(gb.CheckpointError, match="do not match the SHA-256 digest"):
        gb.load(path)


def test_files_without_a_digest_still_load(tmp_path, model):
    path = tmp_path / "m.pt"
    model.save(path)
    payload = torch.load(path, weights_only=True)
    del payload["sha256"]             # as written before the digest existed
    torch.save(payload, path)
    assert _same(gb.load(path), model)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_saved_files_get_the_mode_of_a_new_file(tmp_path, model):
    old = os.umask(0o022)
    try:
        new = tmp_path / "new.pt"
        model.save(new)
        assert stat.S_IMODE(new.stat().st_mode) == 0o644
        os.umask(0o027)
        other = tmp_path / "other.pt"
        model.save(other)
        assert stat.S_IMODE(other.stat().st_mode) == 0o640
    finally:
        os.umask(old)
    new.chmod(0o600)                  # overwriting keeps the mode the file has
    model.save(new)
    assert stat.S_IMODE(new.stat().st_mode) == 0o600


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_temp_file_left_by_a_killed_save_is_removed_by_the_next_save(tmp_path, model):
    path = tmp_path / "m.pt"

    def die(f):
        f.write(b"half a model")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child is killed
        try:
            _io.write_atomic(path, die)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)
    stray = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(stray) == 1 and not path.exists()
    # a temp file of a live process (ours) is another save in progress: it stays
    mine = tmp_path / f".x.pt.greybox-{os.getpid()}-abcd1234.tmp"
    mine.write_bytes(b"in progress")
    recent = tmp_path / f".y.pt.greybox-{pid}-efgh5678.tmp"   # dead, but just written
    recent.write_bytes(b"maybe another machine")
    for p in (stray[0], mine):
        os.utime(p, (p.stat().st_mtime - 120,) * 2)
    model.save(tmp_path / "other.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["other.pt", mine.name, recent.name])


@pytest.mark.parametrize("where,what", [("missing/m.pt", "does not exist"),
                                        ("file.txt/m.pt", "is not a folder")])
def test_saving_into_a_missing_folder_names_it(tmp_path, model, where, what):
    (tmp_path / "file.txt").write_text("x")
    folder = str(tmp_path / where.split("/")[0])
    with pytest.raises(SaveError, match=f"the folder {folder} {what}") as err:
        model.save(tmp_path / where)
    assert isinstance(err.value, gb.errors.GreyboxError) and isinstance(err.value, OSError)
