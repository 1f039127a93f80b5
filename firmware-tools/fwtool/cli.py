"""`fleetloop fw`: factory commands, a thin typer layer over fwtool.keys, fwtool.provision and
fwtool.batch."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from . import batch, keys, release_cli
from . import provision as provisioning
from .cli_common import HomeOpt, clean_errors, home_or_default, progress_bar
from .errors import UsageError

DEFAULT_GATEWAYS = ["gw-1"]
DEFAULT_DEVICES = ["bike-1", "mirror-1", "engine-1"]

app = typer.Typer(
    help="Factory tools: generate the fleet's keys, build, check and flash release bundles, "
    "provision device images and enrol devices with the cloud.\n\n"
    "Example: fleetloop fw keygen --device bike-1",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
@clean_errors
def keygen(
    home: HomeOpt = None,
    gateway: Annotated[list[str] | None, typer.Option(
        "--gateway", "-g", help="Gateway id, repeatable (default: gw-1)", show_default=False)] = None,
    device: Annotated[list[str] | None, typer.Option(
        "--device", "-d", help="Device id, repeatable (default: bike-1 mirror-1 engine-1)",
        show_default=False)] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Regenerate every key and certificate, replacing existing files")] = False,
) -> None:
    """Generate the fleet's keys and certificates under HOME/keys.

    Writes the device CA, the broker certificate, an MQTT client certificate and an Ed25519 batch key per gateway, a client certificate and a random 32-byte record key per device, and the Ed25519 release and config keys. Existing files are kept and reused unless --force.

    Example: fleetloop fw keygen --home ./.fleetloop --gateway gw-1 --device bike-1 --device mirror-1
    """
    root = home_or_default(home)
    written = keys.generate(root, gateway or DEFAULT_GATEWAYS, device or DEFAULT_DEVICES, force=force)
    if not written:
        typer.echo(f"keys up to date in {root / 'keys'}")
        return
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(f"{len(written)} files written in {root / 'keys'}")


@app.command()
@clean_errors
def provision(
    device_id: Annotated[str | None, typer.Option(
        "--id", help="Device id, e.g. bike-1 (one device; or use --csv)", show_default=False)] = None,
    profile: Annotated[str | None, typer.Option(
        "--profile", help=f"Product profile: {', '.join(provisioning.PROFILES)}",
        show_default=False)] = None,
    home: HomeOpt = None,
    broker: Annotated[str, typer.Option("--broker", help="Broker address host:port")] = "localhost:8883",
    out: Annotated[Path | None, typer.Option(
        "--out", help="Image directory (default: HOME/devices/<id>); with --csv the directory"
        " that gets one image per id", show_default=False)] = None,
    cloud: Annotated[str | None, typer.Option(
        "--cloud", help="Also enrol the device with this cloud (base URL)",
        show_default=False)] = None,
    token_file: Annotated[Path | None, typer.Option(
        "--token-file", help="File holding a factory token for --cloud (default:"
        " $FLEETLOOP_ADMIN_TOKEN)", show_default=False)] = None,
    customer: Annotated[str | None, typer.Option(
        "--customer", help="With --cloud: the customer it is sold to (must exist in the cloud)",
        show_default=False)] = None,
    hw_rev: Annotated[str | None, typer.Option(
        "--hw-rev", help="With --cloud: its hardware revision", show_default=False)] = None,
    csv_file: Annotated[Path | None, typer.Option(
        "--csv", help="Provision every device of this file instead of one: a header row"
        " id,profile[,customer][,hw_rev], then one device per line; makes the keys too",
        show_default=False)] = None,
    no_firmware: Annotated[bool, typer.Option(
        "--no-firmware", help="With --csv: host images (identity.json, certs/, keys/, data/"
        " only) for hosts that run the device package from source")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --csv: print the result as JSON")] = False,
    bundle_files: Annotated[list[Path] | None, typer.Option(
        "--bundle", help="Install this full release bundle (fleetloop fw build) as the firmware"
        " instead of building one from the installed sources; it must be for the device's product"
        " (with --csv: one per product of the batch, repeat the option)", show_default=False,
        exists=True, dir_okay=False)] = None,
) -> None:
    """Build the image (firmware in slot a, certificates, keys, identity.json) of one device, and with --cloud enrol it: product, record key, certificate fingerprint and serial, customer, hardware revision.

    The firmware is a release bundle for the device's product, built from the installed sources at the device package's version and signed with the home's release key, or the one given with --bundle. Re-provisioning replaces the firmware (both slots), certificates and keys but never touches the device's data/ directory. With --csv, a whole batch: keys, images and enrolment for every line, firmware built once per product; a device that fails is listed and the others go on (exit 1 if any failed).

    Example: fleetloop fw provision --home ./.fleetloop --id bike-1 --profile bike --broker localhost:8883 --cloud http://127.0.0.1:8000 --token-file factory-token --customer acme --hw-rev r2

    Example: fleetloop fw provision --csv batch.csv --no-firmware --cloud http://127.0.0.1:8000 --token-file factory-token
    """
    from . import enrol as enrolment

    host, port = provisioning.parse_broker(broker)
    root = home_or_default(home)
    if cloud is None and (customer is not None or hw_rev is not None or token_file is not None):
        raise UsageError("--customer, --hw-rev and --token-file go with --cloud")
    if csv_file is not None:
        if device_id is not None or profile is not None or customer is not None or hw_rev is not None:
            raise UsageError("--csv takes ids, profiles, customers and hardware revisions from the"
                             " file: leave out --id, --profile, --customer and --hw-rev")
        rows = batch.read_csv(csv_file)
        bundles = _bundles_by_product(bundle_files) if bundle_files else None
        token = (enrolment.admin_token(token_file, os.environ.get("FLEETLOOP_ADMIN_TOKEN"))
                 if cloud is not None else "")
        _provision_batch(root, rows, host, port, out=out, firmware=not no_firmware, cloud=cloud,
                         token=token, as_json=as_json, bundles=bundles)
    elif device_id is None or profile is None:
        raise UsageError("give --id and --profile for one device, or --csv FILE for a batch")
    elif no_firmware or as_json:
        raise UsageError("--no-firmware and --json go with --csv")
    elif bundle_files and len(bundle_files) > 1:
        raise UsageError("one device takes one --bundle")
    else:
        data = release_cli.read_bundle(bundle_files[0]) if bundle_files else None
        token = (enrolment.admin_token(token_file, os.environ.get("FLEETLOOP_ADMIN_TOKEN"))
                 if cloud is not None else "")
        image = provisioning.provision(root, device_id, profile, host, port, out, bundle=data)
        typer.echo(f"provisioned {device_id} ({profile}) in {image}")
        if cloud is not None:
            status = enrolment.enrol(root, device_id, profile, cloud, token, customer=customer,
                                     hw_rev=hw_rev)
            typer.echo(f"enrolled {device_id} with {cloud}"
                       + ("" if status == 201 else " (already enrolled with this key)"))


def _bundles_by_product(paths: list[Path]) -> dict[str, bytes]:
    """Each --bundle's bytes by the product it is for; UsageError for two of one product or a
    file that is not a bundle (checked against the release key by the batch)."""
    from protocol import bundle

    out: dict[str, bytes] = {}
    for path in paths:
        data = release_cli.read_bundle(path)
        try:
            product = bundle.read(data).product
        except bundle.BundleError as exc:
            raise UsageError(f"{path}: {exc}") from exc
        if product in out:
            raise UsageError(f"two bundles for {product}: give one per product")
        out[product] = data
    return out


def _provision_batch(root: Path, rows: list[batch.Row], host: str, port: int, *, out: Path | None,
                     firmware: bool, cloud: str | None, token: str, as_json: bool,
                     bundles: dict[str, bytes] | None = None) -> None:
    """Run a batch under a progress bar on stderr; a summary (or JSON) on stdout; exit 1 if
    any device failed, after listing each on stderr."""
    with progress_bar("provisioning") as progress:
        result = batch.provision_many(root, rows, host, port, out_root=out, firmware=firmware,
                                      bundles=bundles, cloud=cloud, token=token,
                                      progress=progress)
    if as_json:
        typer.echo(json.dumps(result.as_json()))
    else:
        kind = "firmware" if firmware else "host"
        phases = ", ".join(f"{name} {secs:.1f} s" for name, secs in result.seconds.items())
        enrolled = f", enrolled {result.enrolled}" if cloud is not None else ""
        typer.echo(f"provisioned {len(result.provisioned)} of {len(rows)} devices ({kind} images)"
                   f"{enrolled}, {len(result.failures)} failed in "
                   f"{sum(result.seconds.values()):.1f} s ({phases})")
    for device_id, reason in result.failures:
        typer.echo(f"failed: {device_id}: {reason}", err=True)
    if not result.ok:
        raise typer.Exit(1)


@app.command()
@clean_errors
def enrol(
    device_id: Annotated[str, typer.Option("--id", help="Device id, e.g. bike-1")],
    product: Annotated[str, typer.Option(
        "--product", help=f"Product: {', '.join(provisioning.PROFILES)}")],
    cloud: Annotated[str, typer.Option("--cloud", help="Cloud base URL, e.g. http://127.0.0.1:8000")],
    home: HomeOpt = None,
    token_file: Annotated[Path | None, typer.Option(
        "--token-file", help="File holding the cloud's admin token (default: $FLEETLOOP_ADMIN_TOKEN)",
        show_default=False)] = None,
) -> None:
    """Register a device and its record key (from keygen) with the cloud.

    The cloud then accepts only records and states tagged with that key from this device. Enrolling again with the same key is harmless; if the cloud holds a different key for the id it answers 409 and nothing changes (exit 1).

    Example: fleetloop fw enrol --home ./.fleetloop --id bike-1 --product bike --cloud http://127.0.0.1:8000 --token-file ./.fleetloop/cloud/admin-token
    """
    from . import enrol as enrolment

    root = home_or_default(home)
    token = enrolment.admin_token(token_file, os.environ.get("FLEETLOOP_ADMIN_TOKEN"))
    status = enrolment.enrol(root, device_id, product, cloud, token)
    typer.echo(f"enrolled {device_id} ({product}) with {cloud}"
               + ("" if status == 201 else " (already enrolled with this key)"))


@app.command()
@clean_errors
def crl(
    cloud: Annotated[str, typer.Option("--cloud", help="Cloud base URL, e.g. http://127.0.0.1:8000")],
    home: HomeOpt = None,
    token_file: Annotated[Path | None, typer.Option(
        "--token-file", help="File holding a factory token (default: $FLEETLOOP_ADMIN_TOKEN)",
        show_default=False)] = None,
) -> None:
    """Sign the device CA's revocation list (CRL) of every device the cloud revoked, and upload it; the gateways pull it and restart their brokers with it, which then refuse those devices.

    The CA key never leaves this home. The CRL is valid for a year: run this again after every revocation, and at least once before then.

    Example: fleetloop fw crl --home ./.fleetloop --cloud http://127.0.0.1:8000 --token-file factory-token
    """
    from . import enrol as enrolment
    from . import revoke

    root = home_or_default(home)
    token = enrolment.admin_token(token_file, os.environ.get("FLEETLOOP_ADMIN_TOKEN"))
    result = revoke.sign_and_upload(root, cloud, token)
    typer.echo(f"uploaded CRL {result.number} revoking {len(result.serials)} device(s)"
               + (": " + ", ".join(sorted(result.serials)) if result.serials else ""))


release_cli.register(app)


def main() -> None:  # pragma: no cover - `python -m fwtool.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
