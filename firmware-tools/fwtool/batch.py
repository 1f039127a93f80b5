"""Batch provisioning: keys, images and enrolment of many devices in one run (docs/factory.md).

What makes it fast, and what keeps it the same as provisioning one device at a time:

- keys: one keygen pass over every device (the CA is loaded once), the files made durable with
  one sync (fsutil.SyncedBatch) instead of a fsync per file;
- firmware: one release bundle per product (compiled and signed once, or given), installed
  once per variant (a product; for an engine also its unit, since an engine's image carries
  its own unit's trajectory in assets/) and copied into each image, through the same staging
  functions as fwtool.provision, so the images are byte-identical;
- images: staged in chunks, each chunk synced once and then swapped in, so an image is either
  the old one or the complete new one, as with a single provision;
- enrolment: a few threads sharing one keep-alive HTTP client.

A device that fails in a phase is listed with its reason and skips the later phases; the
others go on. Running the same batch again is harmless: keys are reused, images rebuilt (data/
kept), and an enrolment with the same key is accepted by the cloud.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from . import keys
from .errors import FwToolError, InvalidIdError, UsageError
from .fsutil import SyncedBatch
from .keys import KeyLayout, public_key_raw
from .provision import (
    PROFILES,
    check_request,
    check_target,
    firmware_version,
    identity,
    key_sources,
    package_dir,
    stage_engine_data,
    stage_firmware,
    stage_image,
    swap_in,
)
from .release import build_release
from .slots import open_full
from .trajectory import unit_of

COLUMNS = ("id", "profile", "customer", "hw_rev")
REQUIRED = ("id", "profile")
CHUNK = 500  # images staged between two syncs: bounds the staging space a run holds at once
ENROL_THREADS = 4  # the cloud commits each enrolment: a few in flight hide the round trips

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Row:
    """One device of a batch: a line of the CSV."""

    device_id: str
    profile: str  # bike | mirror | engine (fwtool.provision.PROFILES)
    customer: str | None = None
    hw_rev: str | None = None


@dataclass
class BatchResult:
    """What a batch did: ``provisioned`` ids (image written), how many were ``enrolled``, the
    ``failures`` as (id, reason) and the wall-clock ``seconds`` of each phase."""

    provisioned: list[str] = field(default_factory=list)
    enrolled: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_json(self) -> dict[str, object]:
        return {"provisioned": self.provisioned, "enrolled": self.enrolled,
                "failures": [{"id": dev, "reason": why} for dev, why in self.failures],
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}


def read_csv(path: Path) -> list[Row]:
    """The rows of a batch file: a header ``id,profile[,customer][,hw_rev]`` (any order), then
    one device per line. UsageError naming the file and line for anything wrong."""
    text = _read_text(Path(path))
    reader = csv.reader(io.StringIO(text))
    header = next((fields for fields in reader if _filled(fields)), None)
    if header is None:
        raise UsageError(f"{path}: empty file: the first line must be the header "
                         f"{','.join(REQUIRED)}[,customer][,hw_rev]")
    columns = _columns(path, reader.line_num, header)
    rows: list[Row] = []
    first_line: dict[str, int] = {}
    for fields in reader:
        if not _filled(fields):
            continue
        row = _row(path, reader.line_num, columns, fields)
        if row.device_id in first_line:
            raise UsageError(f"{path}:{reader.line_num}: duplicate id {row.device_id!r} "
                             f"(first on line {first_line[row.device_id]})")
        first_line[row.device_id] = reader.line_num
        rows.append(row)
    if not rows:
        raise UsageError(f"{path}: no devices after the header")
    return rows


def provision_many(home: Path, rows: Sequence[Row], broker_host: str, broker_port: int, *,
                   out_root: Path | None = None, firmware: bool = True,
                   bundles: dict[str, bytes] | None = None,
                   cloud: str | None = None, token: str = "",
                   progress: Progress | None = None) -> BatchResult:
    """Make keys and images for every row (and enrol each with ``cloud``); never raises for
    one device's failure: it goes to ``failures``. UsageError, before anything is written, for
    a bad row, broker or cloud URL, or an image directory that holds another device's image.

    ``out_root`` defaults to HOME/devices (one directory per id under it). ``firmware=False``
    makes host images: identity.json, certs/, keys/ and data/ only, for hosts that run the
    device package from source. ``bundles``: a full release bundle per product to install
    (every product of the batch needs one then; default: built from the installed sources).
    ``progress(done, total)`` counts devices times phases.
    """
    rows = list(rows)
    _check_rows(rows, broker_host, broker_port)
    if bundles is not None:
        _check_bundles(Path(home), rows, bundles, firmware)
    if cloud is not None and not cloud.startswith(("http://", "https://")):
        raise UsageError(f"cloud must be an http or https URL, got {cloud!r}")
    home = Path(home)
    root = Path(out_root) if out_root is not None else home / "devices"
    outs = {row.device_id: root / row.device_id for row in rows}
    _check_targets(outs)

    run = _Run(home, rows, outs, _Ticker(progress, len(rows) * (3 if cloud else 2)))
    run.phase("keys", run.make_keys)
    run.phase("images", partial(run.make_images, broker_host, broker_port, firmware, bundles))
    if cloud is not None:
        run.phase("enrol", partial(run.enrol, cloud, token))
    return run.result


class _Ticker:
    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress = progress
        self.total = total
        self.done = 0

    def __call__(self, steps: int = 1) -> None:
        self.done += steps
        if self.progress is not None:
            self.progress(self.done, self.total)


class _Run:
    """One batch: the rows still in the running, and what happened to the others."""

    def __init__(self, home: Path, rows: list[Row], outs: dict[str, Path], tick: _Ticker) -> None:
        self.home = home
        self.rows = rows
        self.outs = outs
        self.tick = tick
        self.result = BatchResult()
        self.failed: set[str] = set()

    def phase(self, name: str, work: Callable[[], None]) -> None:
        started = time.perf_counter()
        work()
        self.result.seconds[name] = time.perf_counter() - started

    def live(self) -> list[Row]:
        return [row for row in self.rows if row.device_id not in self.failed]

    def fail(self, device_id: str, phase: str, reason: object) -> None:
        self.failed.add(device_id)
        self.result.failures.append((device_id, f"{phase}: {reason}"))

    def make_keys(self) -> None:
        def done(device_id: str, error: FwToolError | None) -> None:
            if error is not None:
                self.fail(device_id, "keys", error)
            self.tick()

        files = SyncedBatch()
        try:
            keys.generate(self.home, [], [row.device_id for row in self.rows],
                          write=files.write, on_device=done)
            files.commit()
        except BaseException:
            files.discard()
            raise

    def make_images(self, broker_host: str, broker_port: int, firmware: bool,
                    bundles: dict[str, bytes] | None) -> None:
        dev_src = package_dir("device")
        fw = firmware_version(dev_src)
        layout = KeyLayout.of_home(self.home)
        skipped = len(self.rows) - len(self.live())
        with tempfile.TemporaryDirectory(prefix="fleetloop-firmware-") as tmp:
            builds = _FirmwareBuilds(Path(tmp), self.home, dev_src, package_dir("protocol"),
                                     bundles or {}) if firmware else None
            for chunk in _chunks(self.live(), CHUNK):
                files = SyncedBatch()
                staged: list[tuple[Row, Path]] = []
                for row in chunk:
                    try:
                        fill, version = builds.filler(row) if builds is not None else (None, fw)
                        ident = identity(row.device_id, row.profile, broker_host, broker_port,
                                         version)
                        sources = key_sources(layout, row.device_id)
                        out = self.outs[row.device_id]
                        staged.append((row, stage_image(out, ident, sources, fill, files.write)))
                    except (FwToolError, OSError) as exc:
                        self.fail(row.device_id, "image", exc)
                        self.tick()
                self._swap_chunk(files, staged)
        os.sync()  # the swaps themselves (renames) are durable before the batch reports them
        self.tick(skipped)

    def _swap_chunk(self, files: SyncedBatch, staged: list[tuple[Row, Path]]) -> None:
        try:
            files.commit()
        except OSError as exc:
            files.discard()
            for row, staging in staged:
                shutil.rmtree(staging, ignore_errors=True)
                self.fail(row.device_id, "image", exc)
                self.tick()
            return
        for row, staging in staged:
            try:
                swap_in(self.outs[row.device_id], staging)
                self.result.provisioned.append(row.device_id)
            except OSError as exc:
                self.fail(row.device_id, "image", exc)
            self.tick()

    def enrol(self, cloud: str, token: str) -> None:
        import httpx  # only a batch with --cloud pays for the import

        from .enrol import TIMEOUT_S, enrol

        live = self.live()
        self.tick(len(self.rows) - len(live))
        limits = httpx.Limits(max_connections=ENROL_THREADS, max_keepalive_connections=ENROL_THREADS)
        with httpx.Client(timeout=TIMEOUT_S, limits=limits) as client, \
                ThreadPoolExecutor(ENROL_THREADS) as pool:
            pending = {pool.submit(enrol, self.home, row.device_id, row.profile, cloud, token,
                                   client, customer=row.customer, hw_rev=row.hw_rev): row
                       for row in live}
            for future in as_completed(pending):
                row = pending[future]
                try:
                    future.result()
                    self.result.enrolled += 1
                except FwToolError as exc:
                    self.fail(row.device_id, "enrol", exc)
                self.tick()


class _FirmwareBuilds:
    """The firmware installed once per variant and copied into every image: a product's
    bundle (slot a, lib/, the boot module), and for an engine also its unit's trajectory."""

    def __init__(self, root: Path, home: Path, dev_src: Path, proto_src: Path,
                 bundles: dict[str, bytes]) -> None:
        self.root = root
        self.home = home
        self.dev_src = dev_src
        self.proto_src = proto_src
        self.bundles = dict(bundles)
        self.versions: dict[str, str] = {}
        self.variants: dict[tuple[str, int | None], Path] = {}

    def filler(self, row: Row) -> tuple[Callable[[Path], None], str]:
        """(what fills a staging directory, the firmware's version) of a row."""
        return partial(_copy_firmware, self._variant(row)), self.versions[row.profile]

    def _variant(self, row: Row) -> Path:
        unit = unit_of(row.device_id) if row.profile == "engine" else None
        key = (row.profile, unit)
        if key not in self.variants:
            product = self._product(row.profile)
            if unit is None:
                self.variants[key] = product
            else:
                dest = self.root / f"{row.profile}-{unit}"
                shutil.rmtree(dest, ignore_errors=True)  # left by a failure for an earlier row
                shutil.copytree(product, dest, copy_function=shutil.copy)
                stage_engine_data(dest, self.dev_src, row.device_id)
                self.variants[key] = dest
        return self.variants[key]

    def _product(self, product: str) -> Path:
        dest = self.root / product
        if product not in self.versions:  # not yet, or it failed for an earlier row: again
            data = self.bundles.get(product)
            if data is None:
                data = build_release(self.home, product, firmware_version(self.dev_src),
                                     device_src=self.dev_src, protocol_src=self.proto_src).data
            pub = public_key_raw(KeyLayout.of_home(self.home).release_pub)
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir()
            self.versions[product] = stage_firmware(dest, data, pub, self.dev_src, product)
        return dest


def _copy_firmware(variant: Path, staging: Path) -> None:
    for entry in sorted(variant.iterdir()):
        if entry.is_dir():
            shutil.copytree(entry, staging / entry.name, copy_function=shutil.copy)
        else:
            shutil.copy(entry, staging / entry.name)


def _check_rows(rows: list[Row], broker_host: str, broker_port: int) -> None:
    if not rows:
        raise UsageError("no devices to provision")
    seen: set[str] = set()
    for row in rows:
        check_request(row.device_id, row.profile, broker_host, broker_port)
        if row.device_id in seen:
            raise UsageError(f"duplicate device id {row.device_id!r}")
        seen.add(row.device_id)


def _check_bundles(home: Path, rows: list[Row], bundles: dict[str, bytes], firmware: bool) -> None:
    """Every product of the batch has a good full bundle of its own, checked against the home's
    release key before anything is written; UsageError otherwise."""
    if not firmware:
        raise UsageError("bundles go with firmware images: leave out --no-firmware")
    missing = sorted({row.profile for row in rows} - set(bundles))
    if missing:
        raise UsageError(f"no bundle for {', '.join(missing)}: give one --bundle per product "
                         "of the batch")
    pub = KeyLayout.of_home(home).release_pub
    if not pub.is_file():
        raise UsageError(f"no release key at {pub} to check the bundles against: run "
                         "`fleetloop fw keygen` for this home first")
    for product, data in sorted(bundles.items()):
        try:
            open_full(data, public_key_raw(pub), product)
        except FwToolError as exc:
            raise UsageError(f"the {product} bundle: {exc}") from exc


def _check_targets(outs: dict[str, Path]) -> None:
    clashes: list[str] = []
    for device_id, out in outs.items():
        try:
            check_target(out, device_id)
        except UsageError as exc:
            clashes.append(str(exc))
    if clashes:
        more = f" (and {len(clashes) - 3} more)" if len(clashes) > 3 else ""
        raise UsageError("; ".join(clashes[:3]) + more)


def _chunks(rows: list[Row], size: int) -> Iterator[list[Row]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text") from exc
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc


def _filled(fields: list[str]) -> bool:
    return any(f.strip() for f in fields)


def _columns(path: Path, line: int, header: list[str]) -> list[str]:
    columns = [name.strip().lower() for name in header]
    unknown = [name for name in columns if name not in COLUMNS]
    if unknown:
        raise UsageError(f"{path}:{line}: unknown column {unknown[0]!r} in the header: "
                         f"use {', '.join(COLUMNS)}")
    twice = [name for name in COLUMNS if columns.count(name) > 1]
    if twice:
        raise UsageError(f"{path}:{line}: column {twice[0]!r} appears twice in the header")
    missing = [name for name in REQUIRED if name not in columns]
    if missing:
        raise UsageError(f"{path}:{line}: the header has no {missing[0]!r} column "
                         f"(a header row {','.join(REQUIRED)}[,customer][,hw_rev] is required)")
    return columns


def _row(path: Path, line: int, columns: list[str], fields: list[str]) -> Row:
    if len(fields) != len(columns):
        raise UsageError(f"{path}:{line}: expected {len(columns)} fields "
                         f"({','.join(columns)}), got {len(fields)}")
    values = {name: value.strip() for name, value in zip(columns, fields, strict=True)}
    try:
        keys.check_id(values["id"], "device")
    except InvalidIdError as exc:
        raise UsageError(f"{path}:{line}: {exc}") from exc
    if values["profile"] not in PROFILES:
        raise UsageError(f"{path}:{line}: unknown profile {values['profile']!r}: choose one of "
                         f"{', '.join(PROFILES)}")
    return Row(values["id"], values["profile"], values.get("customer") or None,
               values.get("hw_rev") or None)
