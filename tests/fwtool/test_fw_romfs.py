"""The firmware as a ROMFS image: packed by fwtool with the one writer (protocol.romfs, byte for
byte mpremote's), mapped by fleetloop's launcher and mounted read-only, and cheaper in heap
than the same .mpy files loaded from lib/."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from fwtool.errors import FwToolError
from fwtool.keys import generate
from fwtool.provision import provision
from fwtool.release import build_release
from fwtool.romfs import build_image
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mpremote.romfs import make_romfs

from fleetloop.device_runner import micropython_binary
from protocol import romfs

LAUNCH = [sys.executable, "-m", "fleetloop.romfs_launch"]


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"MICROPYPATH": "lib", "PATH": "/usr/bin:/bin"}
    if "PYTHONPATH" in os.environ:  # the launcher of the tree under test, not an installed one
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def mpremote_image(files: dict[str, bytes]) -> bytes:
    """What `mpremote romfs build DIR` writes for a directory holding `files`."""
    with tempfile.TemporaryDirectory() as tmp:
        for path, data in files.items():
            (Path(tmp) / path).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / path).write_bytes(data)
        with contextlib.redirect_stdout(io.StringIO()):  # it lists the tree as it goes
            return bytes(make_romfs(tmp, mpy_cross=False))


def ours(files: dict[str, bytes]) -> bytes:
    paths = sorted(files)
    return romfs.build([(p, len(files[p])) for p in paths], [files[p] for p in paths])


@pytest.mark.parametrize("product", ["bike", "mirror", "engine"])
def test_the_one_writer_is_mpremotes_on_the_real_firmware(keyed_home: Path, product: str) -> None:
    made = build_release(keyed_home, product, "0.1.0")
    assert made.image == mpremote_image(dict(made.files)) == ours(dict(made.files))


_NAME = st.text("abcXYZ019_-.", min_size=1, max_size=9).filter(lambda n: n not in (".", ".."))
_PATH = st.lists(_NAME, min_size=1, max_size=4).map("/".join)
_CONTENT = st.one_of(st.binary(max_size=40),
                     st.tuples(st.integers(100, 20000), st.integers(0, 255)).map(
                         lambda t: bytes([t[1]]) * t[0]))


def _no_file_as_dir(files: dict[str, bytes]) -> bool:
    dirs = {p.rsplit("/", 1)[0] + "/" for p in files if "/" in p}
    return not any(p + "/" in dirs or any(d.startswith(p + "/") for d in dirs) for p in files)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_PATH, _CONTENT, min_size=1, max_size=12).filter(_no_file_as_dir))
@example({"a": b"x"})  # odd before padding: the redundant 0x80 group
@example({"a": b"xy"})  # even: none
@example({"lib/device-a/x.mpy": b"1" * 200, "lib/device-a/y": b"", "lib/device.b": b"2"})
def test_the_one_writer_is_mpremotes_on_any_tree(files: dict[str, bytes]) -> None:
    image = ours(files)
    assert image == mpremote_image(files)
    assert len(image) % 2 == 0  # a board maps it at a half-word boundary


def test_the_size_is_padded_even_with_a_redundant_group() -> None:
    assert ours({"a": b"x"})[3] == 0x80 and ours({"a": b"xy"})[3] != 0x80


# Mounts what the launcher mapped at /rom, as the image's first stage does (kept apart from it:
# these tests are about the image). The launcher's variable is "ADDRESS:SIZE" for one image, or
# per slot "a:ADDRESS:SIZE,b:...": the first mapping's last two fields either way.
MOUNT = ("import os, sys, uctypes, vfs\n"
         "e = os.getenv('FLEETLOOP_ROMFS')\n"
         "if e:\n"
         " f = e.split(',')[0].split(':')\n"
         " vfs.mount(vfs.VfsRom(uctypes.bytearray_at(int(f[-2]), int(f[-1]))), '/rom')\n"
         " sys.path.insert(0, '/rom')\n")


def test_a_mapped_image_is_mounted_read_only_at_rom(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "pkg").mkdir(parents=True)
    (tree / "pkg" / "data.txt").write_bytes(b"flights\n" * 100)
    (tmp_path / "rom.img").write_bytes(build_image(tree))
    script = MOUNT + ("print(os.listdir('/rom/pkg'), len(open('/rom/pkg/data.txt', 'rb').read()))\n"
                      "try:\n open('/rom/pkg/new', 'wb')\nexcept OSError:\n print('read-only')\n")
    out = run([*LAUNCH, "rom.img", "-X", "heapsize=32K", "-c", script], tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["['data.txt'] 800", "read-only"]


def test_the_launcher_refuses_what_is_not_an_image(tmp_path: Path) -> None:
    out = run([*LAUNCH, "missing.img", "-c", "print(1)"], tmp_path)
    assert out.returncode == 1 and "missing.img" in out.stderr
    assert run([*LAUNCH], tmp_path).returncode == 2


def test_names_must_be_ascii(tmp_path: Path) -> None:
    (tmp_path / "caf\u00e9.py").write_text("")
    with pytest.raises(FwToolError, match="ASCII"):
        build_image(tmp_path)


def test_the_agent_from_romfs_leaves_more_heap_than_from_mpy_files(tmp_path: Path) -> None:
    home = tmp_path / "home"
    generate(home, ["gw-1"], ["bike-1"])
    image = provision(home, "bike-1", "bike", "localhost", 8883)
    probe = MOUNT + ("import gc\n"
                     "from device import agent, buffer, link, mqtt\n"
                     "gc.collect(); print(agent.__file__, gc.mem_free())\n")
    rom = run([*LAUNCH, "fw/a.img", "-X", "heapsize=64K", "-c", probe], image)
    mpy = run([micropython_binary(), "-X", "heapsize=64K", "-c", probe], image)
    assert rom.returncode == 0 and mpy.returncode == 0, rom.stderr + mpy.stderr
    rom_file, rom_free = rom.stdout.split()
    mpy_file, mpy_free = mpy.stdout.split()
    assert rom_file == "/rom/device/agent.mpy" and mpy_file == "lib/device/agent.mpy"
    assert int(rom_free) - int(mpy_free) > 6000  # measured ~9 KB for these four modules
