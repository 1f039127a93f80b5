"""protocol/_fastpath.c: the cloud's per-record checks of a batch, compiled."""

def device_form(wires: list[bytes], max_id: int, max_name: int, max_metrics: int, /) -> int:
    """The index of the first wire not in the device's form (protocol.batch._DEVICE_FORM),
    or -1 when every one is."""

def tag_failures(inner_pad: bytes, outer_pad: bytes, wires: list[bytes], /) -> list[int]:
    """The indexes of the wires whose tag (protocol.tag) does not verify under the key whose
    padded blocks are given (64 bytes each: the key XOR 0x36, XOR 0x5c)."""
