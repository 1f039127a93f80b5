"""A full bundle installed into a device image's slot a (docs/protocol.md, "Device slots").

    IMAGE/fw/a.img      the slot: the ROMFS image of the bundle's files
    IMAGE/fw/a.man      the slot's file 0: the 64-byte signature and the manifest's text
    IMAGE/fw/boot.json  {"active":"a","a":"<version>"}: what the boot module starts
    IMAGE/fw/floor      the version, as text: the anti-rollback floor starts at what shipped
    IMAGE/lib/...       the same files, loose: the fallback of a board without ROMFS

Installing is the factory's act (provisioning, `fleetloop fw flash BUNDLE --to DIR`): it
resets the slots to this one version, removes slot b and sets the floor to this version. Each
file is written whole under a temporary name and renamed into place, boot.json last, so an
interrupted install leaves the previous boot.json pointing at files that are still whole.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from protocol import bundle, romfs

from .errors import RefusedError
from .fsutil import PUBLIC_FILE, ensure_dir, write_file

FW_DIR = "fw"
LIB_DIR = "lib"
SLOT = "a"
IMAGE_FILE = SLOT + ".img"
MANIFEST_FILE = SLOT + ".man"
BOOT_FILE = "boot.json"
FLOOR_FILE = "floor"
OTHER_SLOT = "b"
PUBLIC_DIR = 0o755

FileWriter = Callable[[Path, bytes, int], None]


def open_full(data: bytes, release_pub: bytes, product: str | None = None) -> bundle.Bundle:
    """The verified full bundle in `data`; RefusedError with every reason otherwise (a delta
    only makes sense on a device that runs its base, never in an image or as a delta's end)."""
    try:
        opened = bundle.read(data)
    except bundle.BundleError as exc:
        raise RefusedError(f"bundle refused: {exc}") from exc
    if opened.kind != "full":
        raise RefusedError(f"a delta over {opened.base}, not a full bundle: give the full "
                           f"bundle of {opened.product} {opened.version}")
    problems = bundle.verify(opened, release_pub)
    if problems:
        raise RefusedError("bundle refused: " + "; ".join(problems))
    if product is not None and opened.product != product:
        raise RefusedError(f"the bundle is for {opened.product}, not for {product}")
    return opened


def slot_files(opened: bundle.Bundle) -> list[tuple[str, bytes]]:
    """(path, bytes) of a full bundle's files, in manifest order."""
    return [(path, opened.files[i + 1]) for i, (path, _, _) in enumerate(opened.entries)]


def boot_record(version: str) -> bytes:
    """fw/boot.json for slot a alone (the agreed format; compact, no newline)."""
    return json.dumps({"active": SLOT, SLOT: version}, separators=(",", ":")).encode()


def install_slot(image_dir: Path, bundle_data: bytes, release_pub: bytes, *,
                 product: str | None = None, write: FileWriter = write_file) -> bundle.Bundle:
    """Verify a full bundle under the raw release public key and make it slot a of the image
    at `image_dir` (see the module's doc); returns the bundle. RefusedError, before anything
    is written, for a bundle that fails a check or is for another `product`."""
    opened = open_full(bundle_data, release_pub, product)
    files = slot_files(opened)
    image = romfs.build([(p, len(d)) for p, d in files], [d for _, d in files])
    fw = Path(image_dir) / FW_DIR
    ensure_dir(fw, PUBLIC_DIR)
    write(fw / IMAGE_FILE, image, PUBLIC_FILE)
    write(fw / MANIFEST_FILE, opened.signed_manifest, PUBLIC_FILE)
    write(fw / FLOOR_FILE, opened.version.encode(), PUBLIC_FILE)
    write(fw / BOOT_FILE, boot_record(opened.version), PUBLIC_FILE)
    for stale in sorted(fw.glob(OTHER_SLOT + ".*")):
        stale.unlink()
    return opened


def write_lib(image_dir: Path, opened: bundle.Bundle, write: FileWriter = write_file) -> None:
    """The bundle's files under IMAGE/lib (replacing what was there): the same bytecode as
    slot a, for a board that cannot map a ROMFS image."""
    lib = Path(image_dir) / LIB_DIR
    shutil.rmtree(lib, ignore_errors=True)
    for path, data in slot_files(opened):
        target = lib / path
        ensure_dir(target.parent, PUBLIC_DIR)
        write(target, data, PUBLIC_FILE)
