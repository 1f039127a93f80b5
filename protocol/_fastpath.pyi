"""protocol/_fastpath.c: the cloud's per-record checks of a batch, compiled."""

from typing import Any

def device_records(
    items: list[object], max_id: int, max_name: int, max_metrics: int, max_bytes: int, /
) -> tuple[list[dict[str, Any]], list[bytes]] | None:
    """(records, wires) of a batch's items when every one is a metric record in the device's
    own form of at most max_bytes, each read as Python's JSON decoders read it; else None."""

def device_form(wires: list[bytes], max_id: int, max_name: int, max_metrics: int, /) -> int:
    """The index of the first wire not in the device's form (protocol.batch._DEVICE_FORM),
    or -1 when every one is."""

def tag_failures(inner_pad: bytes, outer_pad: bytes, wires: list[bytes], /) -> list[int]:
    """The indexes of the wires whose tag (protocol.tag) does not verify under the key whose
    padded blocks are given (64 bytes each: the key XOR 0x36, XOR 0x5c)."""
