"""The firmware as a ROMFS image: packed by fwtool, mapped by fleetloop's launcher, mounted by
the image's boot module, and cheaper in heap than the same .mpy files loaded from lib/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fwtool.errors import FwToolError
from fwtool.keys import generate
from fwtool.provision import provision
from fwtool.romfs import build_image

from fleetloop.device_runner import micropython_binary

LAUNCH = [sys.executable, "-m", "fleetloop.romfs_launch"]


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env={"MICROPYPATH": "lib", "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)


def test_a_mapped_image_is_mounted_read_only_at_rom(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "pkg").mkdir(parents=True)
    (tree / "pkg" / "data.txt").write_bytes(b"flights\n" * 100)
    (tmp_path / "rom.img").write_bytes(build_image(tree))
    (tmp_path / "boot.py").write_text((Path(__file__).parents[2] / "device" / "boot.py").read_text())
    script = ("import boot, os; print(boot.mount(), os.listdir('/rom/pkg'), "
              "len(open('/rom/pkg/data.txt', 'rb').read()))\n"
              "try:\n open('/rom/pkg/new', 'wb')\nexcept OSError:\n print('read-only')\n")
    out = run([*LAUNCH, "rom.img", "-X", "heapsize=32K", "-c", script], tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["True ['data.txt'] 800", "read-only"]


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
    probe = ("import boot, gc; boot.mount()\n"
             "from device import agent, buffer, link, mqtt\n"
             "gc.collect(); print(agent.__file__, gc.mem_free())\n")
    rom = run([*LAUNCH, "romfs.img", "-X", "heapsize=64K", "-c", probe], image)
    mpy = run([micropython_binary(), "-X", "heapsize=64K", "-c", probe], image)
    assert rom.returncode == 0 and mpy.returncode == 0, rom.stderr + mpy.stderr
    rom_file, rom_free = rom.stdout.split()
    mpy_file, mpy_free = mpy.stdout.split()
    assert rom_file == "/rom/device/agent.mpy" and mpy_file == "lib/device/agent.mpy"
    assert int(rom_free) - int(mpy_free) > 6000  # measured ~9 KB for these four modules
