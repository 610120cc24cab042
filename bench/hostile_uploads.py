"""Hostile uploads for the app's data upload (catalog.save_upload, what the Train page calls): archives that
decode to far more memory than they weigh, encrypted or AES-compressed members, a long member name, a
16-bit PNG. Each is checked in a fresh process, which reports its outcome and its peak memory (ru_maxrss)
beside the peak of the same process before the upload.

    python -m bench.hostile_uploads    # one line per upload: outcome, bytes uploaded, peak memory (MiB)
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def png_bytes(width: int, height: int, mode: str = "L", value: int = 0) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (width, height), value).save(buf, "PNG", optimize=False, compress_level=9)
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def big_png_zip(count: int = 25, side: int = 6000) -> bytes:
    """`count` black side x side PNGs: a few KB uploaded, count x side^2 pixels declared."""
    image = png_bytes(side, side)
    return zip_bytes({f"{i}.png": image for i in range(count)})


def npz_bytes(compressed: bool = True, **arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def zeros_npz(gib: float = 8.0) -> bytes:
    """A compressed .npz whose x declares `gib` GiB of float64 zeros (written in slices: never held whole)."""
    import numpy.lib.format as fmt

    n = int(gib * (1 << 30) / 8 / 1024)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as f:
            fmt.write_array_header_2_0(f, {"descr": "<f8", "fortran_order": False, "shape": (n, 1, 32, 32)})
            chunk = bytes(8 * 1024 * 4096)
            for start in range(0, n, 4096):
                f.write(chunk[: 8 * 1024 * min(4096, n - start)])
    return buf.getvalue()


def _patch_members(data: bytes, flag: int | None = None, method: int | None = None) -> bytes:
    """The archive with each member's flag bits or compression method rewritten, in the local headers and in
    the central directory (what an encrypting or AES-compressing zip tool writes there)."""
    out = bytearray(data)
    for signature, flag_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        at = out.find(signature)
        while at >= 0:
            if flag is not None:
                struct.pack_into("<H", out, at + flag_at, struct.unpack_from("<H", out, at + flag_at)[0] | flag)
            if method is not None:
                struct.pack_into("<H", out, at + method_at, method)
            at = out.find(signature, at + 4)
    return bytes(out)


def encrypted(data: bytes) -> bytes:
    return _patch_members(data, flag=0x1)


def aes(data: bytes) -> bytes:
    return _patch_members(data, method=99)


def sixteen_bit_png(level: float = 0.46, side: int = 12) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((side, side), round(level * 65535), dtype=np.uint16)).save(buf, "PNG")
    return buf.getvalue()


def small_npz() -> bytes:
    x = np.random.default_rng(0).random((40, 28, 28)).astype(np.float32)
    x[:, :10] = np.nan
    return npz_bytes(compressed=False, x=x)


def hostile() -> dict[str, bytes]:
    """name -> bytes of each hostile upload (the names carry the suffix save_upload goes by)."""
    small = zip_bytes({f"{i}.png": png_bytes(12, 12, "LA", (200, 255)) for i in range(3)})
    return {
        "bomb-25x6000x6000.zip": big_png_zip(),
        "zeros-2gib.npz": zeros_npz(2.0),
        "zeros-256mib.npz": zeros_npz(0.25),
        "encrypted.zip": encrypted(small),
        "aes.zip": aes(small),
        "aes.npz": aes(small_npz()),
        "long-name.zip": zip_bytes({"d" * 300 + ".png": png_bytes(12, 12, "LA", (200, 255))}),
    }


_CHILD = """
import json, resource, sys
from pathlib import Path
from misgan_core import MisGANError, catalog
data = Path(sys.argv[2]).read_bytes()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    outcome = "kept: " + str(catalog.save_upload(sys.argv[1], data))
except MisGANError as err:
    outcome = "refused: " + str(err)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"upload": sys.argv[1], "bytes": len(data), "outcome": outcome, "peak_before_mib": before // 1024,
                  "peak_mib": after // 1024}))
"""


def measure(name: str, data: bytes, workdir: Path, env: dict[str, str] | None = None) -> dict:
    """Upload `data` as `name` in a fresh process (the data folder under workdir); its outcome and peak memory."""
    import os

    path = workdir / "upload.bin"
    path.write_bytes(data)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MISGAN_DATA_DIR": str(workdir / "data"), **(env or {})}
    out = subprocess.run([sys.executable, "-c", _CHILD, name, str(path)], capture_output=True, text=True,
                         env=env, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


_PAGE = """
import json, resource, sys
from pathlib import Path
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=600).run()
at.switch_page("../pages/train.py").run()
box = at.selectbox(key="train-dataset")
box.set_value(next(o for o in box.options if o.startswith("your own data"))).run()
for path in sys.argv[2:]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    data = Path(path).read_bytes()
    at.file_uploader(key="train-upload").set_value((Path(path).name, data, "application/octet-stream")).run()
    shown = [e.value for e in at.error] + [e.value for e in at.exception]
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"upload": Path(path).name, "bytes": len(data), "shown": shown[:1],
                      "peak_before_mib": before // 1024, "peak_mib": after // 1024}))
"""


def measure_page(files: dict[str, bytes], workdir: Path) -> list[dict]:
    """Upload each file in turn to the Train page (Streamlit's AppTest, in one fresh process, as one server
    handles one session): what the page shows, and the process's peak memory before and after each."""
    import os

    paths = []
    for name, data in files.items():
        paths.append(workdir / name)
        paths[-1].write_bytes(data)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MISGAN_DATA_DIR": str(workdir / "data"),
           "MISGAN_RUNS_DIR": str(workdir / "runs")}
    out = subprocess.run([sys.executable, "-c", _PAGE, str(ROOT / "workbench" / "Home.py"), *map(str, paths)],
                         capture_output=True, text=True, env=env, timeout=600, check=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    import tempfile

    files = hostile()
    with tempfile.TemporaryDirectory() as tmp:
        print("catalog.save_upload, a fresh process per upload:")
        for name, data in files.items():
            print(json.dumps(measure(name, data, Path(tmp))))
    with tempfile.TemporaryDirectory() as tmp:
        print("the Train page (AppTest), one process, the uploads in turn:")
        for row in measure_page(files, Path(tmp)):
            print(json.dumps(row))


if __name__ == "__main__":
    main()
