"""Which gateway serves a device: assigned once, moved only by an operator.

The first gateway that delivers data for a device is assigned to it (cloud.services.ingest);
from then on records and states for that device from any other gateway are quarantined with
the reason "device <id> is assigned to gateway <gw>", so a misconfigured or compromised
gateway cannot write into another site's devices (nor push their seqs ahead and make the real
records look like duplicates). An operator moves a device with `assign`; its latest config is
then announced again at a new revision, so the new gateway's next config poll carries it even
though the config is older than that gateway's cursor, and the old gateway's feed no longer
does.
"""

from __future__ import annotations

from dataclasses import replace

from cloud.errors import NotFound, UnknownReference
from cloud.services import progress
from cloud.store import DeviceRow, Store


def assign(store: Store, device_id: str, gateway_id: str) -> DeviceRow:
    """Assign the device to the gateway (NotFound: no such device; UnknownReference: no such
    gateway). Assigning it to the gateway it has changes nothing."""
    with store.transaction():
        device = store.get_device(device_id)
        if device is None:
            raise NotFound(f"device {device_id} not found")
        if store.get_gateway(gateway_id) is None:
            raise UnknownReference(f"gateway {gateway_id} is not registered")
        if device.gateway == gateway_id:
            return device
        device = replace(device, gateway=gateway_id)
        store.save_device(device)
        store.reannounce_config(device_id)
        progress.on_assigned(store, [device_id])  # its offer moves with it
    return device
