"""A checkpoint that is a zip bomb (a small file whose one member inflates to a gigabyte) is refused
from its declared sizes, before anything is inflated: the process's peak memory barely moves."""
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOMB_MB = 1024
PARTS = 7  # what torch.save writes: data.pkl, .format_version, .storage_alignment, byteorder, data/0, version, serialization_id


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """A checkpoint written by torch.save whose one tensor's bytes are replaced by a member that
    inflates to 1 GB (the file is about 1 MB): loading it would read the whole member."""
    import torch

    buf = io.BytesIO()
    torch.save({"format": "lenet-lab/checkpoint", "version": 2, "weights": torch.zeros(10)}, buf)
    path = tmp_path_factory.mktemp("bomb") / "bomb.pt"
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for info in src.infolist():
            if not info.filename.endswith("/data/0"):
                z.writestr(info.filename, src.read(info))
                continue
            with z.open(info.filename, "w", force_zip64=True) as f:
                chunk = bytes(1 << 20)
                for _ in range(BOMB_MB):
                    f.write(chunk)
    assert path.stat().st_size < 8 << 20
    return path


PROBE = """
import resource, sys
from pathlib import Path
from lenet_core.checkpoint import CheckpointError, load_checkpoint
from lenet_app import uploads
data = Path(sys.argv[1]).read_bytes()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_checkpoint(data, name="bomb.pt")
    print("LOADED")
except CheckpointError as e:
    print("REFUSED", e)
print("UPLOAD", *uploads.accept(data, "bomb.pt"))
print("PEAK_RISE_MB", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def test_a_zip_bomb_checkpoint_is_refused_before_it_is_inflated(bomb, tmp_path):
    env = {"PYTHONPATH": str(ROOT), "LENET_RUNS_DIR": str(tmp_path / "runs"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", PROBE, str(bomb)], capture_output=True, text=True, env=env,
                         timeout=120, cwd=ROOT).stdout
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    assert lines["REFUSED"] == (f"bomb.pt would inflate to {BOMB_MB * 2**20 / 1e6:,.1f} MB in {PARTS} parts; a LeNet Lab file "
                                "is at most 67.1 MB, so it was not opened"), out
    assert lines["UPLOAD"].replace("\\", "").startswith("error **bomb.pt** was not loaded: bomb.pt would inflate to"), out
    rise = float(lines["PEAK_RISE_MB"])
    print(f"peak memory rise while refusing a {BOMB_MB} MB zip bomb twice: {rise:.1f} MB")
    assert rise < 100
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing kept


def test_a_member_that_inflates_past_its_declared_size_is_refused(tmp_path):
    """Declared sizes can lie: the zip reader checks what it inflates against them."""
    import torch

    from lenet_core.checkpoint import CheckpointError, load_checkpoint

    buf = io.BytesIO()
    torch.save({"format": "lenet-lab/checkpoint", "version": 2, "w": torch.zeros(1000)}, buf)
    raw = bytearray(buf.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("data/0"))
    # Shrink the declared size of the tensor's bytes in the central directory.
    central = raw.rfind(b"PK\x01\x02", 0, len(raw))
    while central != -1:
        name_len = int.from_bytes(raw[central + 28:central + 30], "little")
        if raw[central + 46:central + 46 + name_len].decode().endswith("data/0"):
            raw[central + 24:central + 28] = (16).to_bytes(4, "little")
            break
        central = raw.rfind(b"PK\x01\x02", 0, central)
    assert info.file_size == 4000
    with pytest.raises(CheckpointError):
        load_checkpoint(bytes(raw), name="liar.pt")
