"""Hardening of checkpoints and atomic saves (issue 11, items 12 and 14; issue 26, items 2
and 16)."""

import io
import os
import signal
import stat
import struct
import zipfile

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


# tiny files that claim large tensors (issue 26, item 2) -------------------------------------

def _residual_model(width=4, **residual):
    from torch import nn
    text = "input x: real  output y: bool  output z: bool  rule r: x > ~1 -> y  " \
           "rule s: x < ~0 -> z"
    net = nn.Sequential(nn.Linear(1, width), nn.ReLU(), nn.Linear(width, width),
                        nn.Linear(width, 1))
    return gb.GreyBox(text, semantics="product", residual=residual or {"y": net})


def _widened(tmp_path, n, tensors, *, digest=True):
    """A model whose residual claims ``n``-wide layers, holding ``tensors(n)`` (name ->
    tensor, as torch.save writes views: their storage, offset and strides)."""
    path = tmp_path / "m.pt"
    _residual_model().save(path)
    payload = torch.load(path, weights_only=True)
    layers = payload["architectures"]["residual"]["y"]["children"]
    layers[0][1]["args"]["out_features"] = n
    layers[2][1]["args"].update(in_features=n, out_features=n)
    layers[3][1]["args"]["in_features"] = n
    state = payload["state"]
    state.update({"residual.y.0.weight": torch.zeros(n, 1), "residual.y.0.bias": torch.zeros(n),
                  "residual.y.2.weight": torch.zeros(n, n), "residual.y.2.bias": torch.zeros(n),
                  "residual.y.3.weight": torch.zeros(1, n)})
    state.update(tensors(n))
    payload.pop("sha256")
    if digest:
        payload["sha256"] = _io._digest(payload)
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("digest", [True, False])
def test_expanded_weights_claiming_a_large_layer_are_refused_before_allocating(tmp_path,
                                                                               digest):
    # one number stored, a 1500x1500 layer claimed (the 4.8 KB file claimed
    # 12000x12000 and loaded it; here small, so the test allocates little either way)
    path = _widened(tmp_path, 1500, lambda n: {
        "residual.y.2.weight": torch.zeros(1).expand(n, n),
        "residual.y.0.weight": torch.zeros(1).expand(n, 1),
        "residual.y.2.bias": torch.zeros(1).expand(n)}, digest=digest)
    assert path.stat().st_size < 20_000
    with pytest.raises(gb.CheckpointError, match=r"tensor 'residual.y.0.weight' of shape "
                       r"\[1500, 1\] needs 6,000 bytes \(1,500 x 4\) but the file stores 4 "
                       r"bytes for it: its elements repeat \(strides \[0, 1\]\); refused "
                       "before allocating it"):
        gb.load(path)


def test_overlapping_views_and_storages_shared_between_tensors_are_refused(tmp_path):
    path = _widened(tmp_path, 4, lambda n: {      # strides (1, 1): 16 elements from 7
        "residual.y.2.weight": torch.arange(7.0).as_strided((4, 4), (1, 1))})
    with pytest.raises(gb.CheckpointError, match=r"'residual.y.2.weight' of shape \[4, 4\] "
                       r"needs 64 bytes .* stores 28 bytes for it: its elements repeat "
                       r"\(strides \[1, 1\]\)"):
        gb.load(path)
    base = torch.zeros(16)                        # two different views of 16 numbers
    path = _widened(tmp_path, 4, lambda n: {"residual.y.2.weight": base.view(4, 4),
                                            "residual.y.0.weight": base[3:7].view(4, 1)})
    with pytest.raises(gb.CheckpointError, match=r"tensors 'residual.y.0.weight', "
                       r"'residual.y.2.weight' share one storage of 64 bytes but need 80"):
        gb.load(path)
    shared = torch.zeros(4)                       # one tensor under two layers' names
    path = _widened(tmp_path, 4, lambda n: {"residual.y.0.bias": shared,
                                            "residual.y.2.bias": shared})
    with pytest.raises(gb.CheckpointError, match=r"residual.y.2.bias is the same tensor in "
                       r"the file as residual.y.0.bias; greybox rebuilds residual 'y' from "
                       r"its description with a tensor of its own"):
        gb.load(path)


def test_a_module_shared_by_two_outputs_loads_shared_once(tmp_path):
    from torch import nn
    net = nn.Sequential(nn.Linear(1, 4), nn.ReLU(), nn.Linear(4, 1))
    model = _residual_model(y=net, z=net)
    model.save(tmp_path / "m.pt")
    loaded = gb.load(tmp_path / "m.pt")
    assert loaded.residual["y"] is loaded.residual["z"]
    assert _same(loaded, model)


def test_rules_deciding_more_values_than_the_state_holds_are_refused_before_building(
        tmp_path, model, monkeypatch):
    # a 17 KB file whose rules decide 500 outputs over 100,000 values each built a model
    # of 50M biases before comparing it with its state of a few numbers; here 30 outputs
    model.save(tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["rules"] = "input x: real\n" + "".join(
        f"output y{i}: int 0..99999\n" for i in range(1, 31)) + "output y: bool\n" \
        "rule r: x > ~1 -> y\n"
    payload["sha256"] = _io._digest(payload)
    torch.save(payload, tmp_path / "rules.pt")

    def never(*args, **kwargs):
        raise AssertionError("the model was built")
    monkeypatch.setattr(gb.GreyBox, "__init__", never)
    with pytest.raises(gb.CheckpointError, match=r"decide 31 output\(s\) whose biases need "
                       r"3,000,001 numbers \('y1' 100,000, 'y2' 100,000, 'y3' 100,000, \.\.\.\) "
                       r"but the file's state holds \d+ numbers in all; refused before "
                       "building the model"):
        gb.load(tmp_path / "rules.pt")
    monkeypatch.undo()
    # a wide output, and a family of outputs sharing one bias of 1,000, still load
    wide = gb.GreyBox("set p: {a, b, c}\ninput x(p): real\noutput y(p): int 0..999\n"
                      "output z: int 0..4999\nrule r(i in p): x(i) > 1 -> y(i) = 3",
                      semantics="product")
    wide.save(tmp_path / "wide.pt")
    assert _same(gb.load(tmp_path / "wide.pt"), wide)


def test_keys_missing_from_the_state_blame_the_file_unless_networks_were_given(tmp_path,
                                                                               model):
    model.save(tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["state"]["extra"] = torch.zeros(1)
    payload.pop("sha256")
    torch.save(payload, tmp_path / "extra.pt")
    with pytest.raises(gb.CheckpointError, match=r"the file's parameters do not match the "
                       r"model its rules and architectures make \(missing: \[\], "
                       r"unexpected: \['extra'\]\)"):
        gb.load(tmp_path / "extra.pt")


@pytest.mark.parametrize("digest", [True, False])
def test_a_tensor_listed_under_many_names_is_refused_before_hashing_it(tmp_path, model,
                                                                      monkeypatch, digest):
    # one 4 MB tensor under 2,000 names: a 4 MB file hashed 2,000 times (16 s) before its
    # digest was compared; here 40 KB under 2,000 names
    model.save(tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    one = torch.ones(10_000)
    payload["state"].update({f"k{i}": one for i in range(2000)})
    payload["sha256"] = "0" * 64
    if not digest:
        payload.pop("sha256")
    torch.save(payload, tmp_path / "alias.pt")

    def never(*args, **kwargs):
        raise AssertionError("the state was hashed")
    monkeypatch.setattr(_io, "_digest", never)
    with pytest.raises(gb.CheckpointError, match=r"the state names 80,0\d\d,\d{3} bytes of "
                       r"tensors in a file of [\d,]+ bytes, more than 64 times its size: its "
                       r"tensors are listed under many names \(one under 2,000 names: 'k0', "
                       r"'k1', 'k2', \.\.\.\); refused before reading them"):
        gb.load(tmp_path / "alias.pt")


def test_the_digest_of_a_shared_module_is_the_one_files_were_written_with(tmp_path):
    from torch import nn
    net = nn.Sequential(nn.Linear(1, 4), nn.ReLU(), nn.Linear(4, 1))
    model = _residual_model(y=net, z=net)
    model.save(tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    import hashlib
    import json
    h = hashlib.sha256()     # the digest as files have been written: bytes copied per name
    meta = {k: payload.get(k) for k in (*_io._META, *_io._LATER_META)}
    h.update(json.dumps(meta, sort_keys=True, default=repr).encode("utf-8"))
    for name in sorted(payload["state"]):
        t = payload["state"][name].detach().cpu().contiguous().reshape(-1)
        h.update(json.dumps([name, str(t.dtype), list(payload["state"][name].shape)])
                 .encode("utf-8"))
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    assert payload["sha256"] == h.hexdigest() == _io._digest(payload)


def test_compressed_archive_members_are_refused(tmp_path, model):
    path, packed = tmp_path / "m.pt", tmp_path / "packed.pt"
    model.save(path)
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as out:
        for member in src.infolist():            # torch.load reads this, inflated
            out.writestr(member.filename, src.read(member.filename))
    with pytest.raises(gb.CheckpointError, match=r"the archive member '.*' is compressed; "
                       "torch.save stores every member uncompressed"):
        gb.load(packed)


@pytest.mark.parametrize("name,value,match", [
    ("rules.r.weight", torch.tensor(1.5 + 2j, dtype=torch.complex64),
     "tensor 'rules.r.weight' is complex64 in the file but float32 in the model"),
    ("range_known", torch.tensor(0.5), "tensor 'range_known' is float32 in the file but bool"),
])
def test_weights_of_another_kind_are_refused_not_cast(tmp_path, model, name, value, match):
    # complex64 weights loaded with their imaginary part dropped (issue 26, item 16)
    path = tmp_path / "m.pt"
    model.save(path)
    payload = torch.load(path, weights_only=True)
    payload["state"][name] = value
    payload["sha256"] = _io._digest(payload)
    torch.save(payload, path)
    with pytest.raises(gb.CheckpointError, match=match):
        gb.load(path)


def _append_central_entry(raw: bytearray, entry: bytes) -> None:
    """Append ``entry`` to the central directory of the zip archive ``raw``."""
    end = raw.rfind(b"PK\x05\x06")
    n1, n2, size, start = struct.unpack_from("<HHII", raw, end + 8)
    zip64 = raw[end - 20:end - 16] == b"PK\x06\x07"
    if zip64:
        z64 = struct.unpack_from("<Q", raw, end - 20 + 8)[0]
        count, size, start = struct.unpack_from("<QQQ", raw, z64 + 32)
    raw[start + size:start + size] = entry
    grown = len(entry)
    end += grown
    if zip64:
        struct.pack_into("<QQQ", raw, z64 + grown + 24, count + 1, count + 1, size + grown)
        struct.pack_into("<Q", raw, end - 20 + 8, z64 + grown)
    struct.pack_into("<HHI", raw, end + 8, n1 if n1 == 0xFFFF else n1 + 1,
                     n2 if n2 == 0xFFFF else n2 + 1,
                     size + grown if not zip64 else min(size + grown, 0xFFFFFFFF))


def _nest(path, size):
    """Add to the archive at ``path`` a member whose bytes are a whole stored member of
    ``size`` bytes, and that inner member to the central directory: two members whose
    bytes overlap, each with a good name and CRC-32 (nested, as zip bombs do)."""
    scratch = io.BytesIO()
    with zipfile.ZipFile(scratch, "w") as z:
        z.writestr("archive/inner", bytes(size))
    scratch = scratch.getvalue()
    cd = scratch.find(b"PK\x01\x02")
    local, entry = scratch[:cd], scratch[cd:scratch.find(b"PK\x05\x06")]
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("archive/outer", local)   # a member whose bytes are a whole member
        info = z.getinfo("archive/outer")
    raw = bytearray(path.read_bytes())
    n, m = struct.unpack_from("<HH", raw, info.header_offset + 26)
    inner_at = info.header_offset + 30 + n + m
    entry = bytearray(entry)
    struct.pack_into("<I", entry, 42, inner_at)
    _append_central_entry(raw, bytes(entry))
    path.write_bytes(bytes(raw))


def test_overlapping_archive_members_are_refused(tmp_path, model):
    # torch.load reads each member a pickle names: members nested in one another (or a
    # thousand names for the same bytes) would allocate those bytes each time
    path = tmp_path / "m.pt"
    model.save(path)
    _nest(path, 100_000)
    assert torch.load(path, weights_only=True)["format"] == "greybox-model"
    with pytest.raises(gb.CheckpointError, match=r"the archive's members hold 2\d\d,\d\d\d "
                       r"bytes in a file of 1\d\d,\d\d\d bytes \(members overlap\)"):
        gb.load(path)
