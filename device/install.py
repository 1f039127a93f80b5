"""The heavy half of an update, on a fresh heap (main.py imports it only when the agent stopped
for "update", or at a start that finds data/ota/go, and unloads it again). Two steps, chosen by
what is on flash (device/update.py lists the files):

check    file 0 is here, no plan yet: rebuild the manifest (a delta's patch over the installed
         manifest), verify the release key's signature over its digest, then the product, no
         downgrade (newer than installed, not below the floor), the minimum version, safe paths,
         the offer's id, free space. Plan the files whose hash differs from the installed ones.
install  every planned part is here: check each part's size and sha256, assemble the new ROMFS
         image in the inactive slot from the parts and the running slot's unchanged files, check
         the image's sha256, write the slot's manifest, switch (one rename of fw/boot.json) and
         reset for the trial boot.

Each step can be cut at any instant (power) and run again from the start: nothing it writes is
used before the rename that ends it. A refusal is a "failure" with its reason, reported by the
agent in its next state. Every file is streamed through one 512-byte buffer.
"""

import binascii
import hashlib
import json
import os

from device import port

CHECKED = "checked"
SWITCHED = "switched"
_BUF = 512
# protocol.ota's, copied (tests pin them): the signature is checked before protocol.ota is
# imported, on a heap that holds as little as can be (Ed25519 needs most of a small one).
_SIG_BYTES = 64
_SIGN_PREFIX = b"fleetloop-manifest-v1\n"
_PATCH_HEAD = b"fleetloop-manifest 1\nbase "


class Refused(Exception):
    pass


def _status(ota_dir, word, progress, reason, offer=None):
    try:
        st = json.loads(port.read_bytes(ota_dir + "/status.json"))
    except (OSError, ValueError):
        st = {}
    if offer:
        st["id"], st["version"], st["rollout"] = offer["id"], offer["version"], \
            offer.get("rollout", "")
    st["update"], st["progress"], st["reason"] = word, progress, reason[:160]
    port.write_atomic(ota_dir + "/status.json", json.dumps(st).encode())


def _clean(ota_dir, keep=("status.json",)):
    for name in port.listdir(ota_dir):
        if name not in keep:
            port.remove(ota_dir + "/" + name)


def _digest(path, buf, skip=0, limit=-1):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if skip:
            f.seek(skip)
        left = limit
        while left:
            n = f.readinto(buf)
            if not n:
                break
            if 0 < left < n:
                n = left
            h.update(memoryview(buf)[:n])
            if left > 0:
                left -= n
    return h.digest()


def _free_bytes(path):
    try:
        st = os.statvfs(path)  # type: ignore[attr-defined]
        return st[0] * st[4]  # f_bsize * f_bavail (MicroPython returns a tuple)
    except (AttributeError, OSError):
        return -1  # the port cannot say: the write itself fails if it must


def _parts_complete(ota_dir):
    with open(ota_dir + "/plan") as f:
        for line in f:
            index, size = line.split()
            path = ota_dir + "/p" + index
            if not port.exists(path) or port.file_size(path) < int(size):
                return False
    return True


def _trace(trace, what):
    if trace:
        trace(what)


def _inactive(slot):
    return "b" if slot == "a" else "a"


def _copy_file(src, dst, skip, buf):
    """dst (via a temporary file and a rename) = src from byte `skip`, streamed."""
    with open(src, "rb") as f, open(dst + ".tmp", "wb") as out:
        f.seek(skip)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            out.write(memoryview(buf)[:n])
        port.flush_durable(out)
    port.replace(dst + ".tmp", dst)


def _manifest(path):
    """The manifest dict of a slot's or a download's manifest file (signature + text), read
    line by line and checked against every rule of protocol.ota."""
    from protocol import ota

    with open(path, "rb") as f:
        f.seek(_SIG_BYTES)
        return ota.read_manifest(f)


def _file_entries(path):
    """(path, size, sha256) of each file line of a manifest file, one at a time."""
    from protocol import ota

    with open(path, "rb") as f:
        f.seek(_SIG_BYTES)
        for entry in ota.file_entries(f):
            yield entry


def _rebuild(f0, installed_path, man, buf):
    """data/ota/man: the signature and the whole manifest text, from file 0 (a whole manifest,
    or a delta's patch over the installed manifest). Returns the signature."""
    with open(f0, "rb") as f:
        sig = f.read(_SIG_BYTES)
        head = f.read(len(_PATCH_HEAD))
    if head != _PATCH_HEAD:
        _copy_file(f0, man, 0, buf)
        return sig
    from protocol import ota

    installed = port.read_bytes(installed_path)[_SIG_BYTES:].decode()
    patch = port.read_bytes(f0)[_SIG_BYTES:].decode()
    try:
        text = ota.apply_patch(installed, patch)
    except ValueError as e:
        raise Refused(str(e))
    finally:
        ota = None  # type: ignore[assignment]
        port.unload("protocol.ota", "protocol")
    del installed, patch
    port.collect()
    port.write_atomic(man, sig + text.encode())
    return sig


def check(image, slot, version, product, offer, release_pub, trace=None):
    """Verify file 0 and write the plan; returns the event. Raises Refused with the reason.
    The signature is checked first, with nothing else on the heap (Ed25519 needs most of a
    small one), over the digest of the text streamed from flash; the text is then read line
    by line."""
    ota_dir = image + "/data/ota"
    fw = image + "/fw"
    f0 = ota_dir + "/f0"
    man = ota_dir + "/man"
    installed_path = fw + "/" + slot + ".man"
    buf = bytearray(_BUF)
    if port.file_size(f0) != offer["size"]:
        raise Refused("file 0 is not the size the offer says")
    sig = _rebuild(f0, installed_path, man, buf)
    _trace(trace, "man")
    digest = _digest(man, buf, _SIG_BYTES)
    del buf
    port.collect()
    from protocol import ed25519

    good = ed25519.verify(release_pub, _SIGN_PREFIX + digest, sig)
    ed25519 = None  # type: ignore[assignment]
    port.unload("protocol.ed25519", "protocol.sha512", "protocol")
    port.collect()
    if not good:
        raise Refused("bad signature: not signed by the release key")
    if binascii.hexlify(digest).decode()[:16] != offer["id"]:  # protocol.ota.bundle_id
        raise Refused("file 0 is not the manifest the offer names")
    _trace(trace, "signature")
    from protocol import ota

    try:
        m = _manifest(man)
    except ValueError as e:
        raise Refused("manifest: " + str(e))
    m["files"] = None  # every line checked; read again one at a time below
    try:
        floor = port.read_bytes(fw + "/floor").decode().strip()
    except OSError:
        floor = None
    why = ota.installable(m, product, version, floor)
    if why:
        raise Refused(why)
    old = {}
    for path, size, sha in _file_entries(installed_path):
        old[path] = (size, sha)
    plan = []
    need = m["image"][0]
    for i, (path, size, sha) in enumerate(_file_entries(man)):
        if old.get(path) != (size, sha):
            plan.append("%d %d\n" % (i + 1, size))
            need += size
    del old
    free = _free_bytes(fw)
    if 0 <= free < need:
        raise Refused("not enough space: needs %d bytes, %d free" % (need, free))
    _status(ota_dir, "downloading", 0 if plan else 100, "", offer)
    _trace(trace, "status")
    port.write_atomic(ota_dir + "/plan", "".join(plan).encode())  # the step is done
    _trace(trace, "plan")
    port.remove(ota_dir + "/go")
    return {"event": "update", "status": CHECKED, "version": m["version"], "files": len(plan),
            "bytes": need - m["image"][0]}


def _entries(path):
    """[(path, size)] of a manifest file's files: the lean list the layout needs."""
    return [(p, n) for p, n, _ in _file_entries(path)]


def _old_offsets(installed_path):
    """{path: (offset, size)} of the files in the running slot's image (same layout)."""
    from protocol import romfs

    files = _entries(installed_path)
    where = {}
    at = romfs.offsets(files)
    for i in at:
        where[files[i][0]] = (at[i], files[i][1])
    return where


def _copy(out, h, path, offset, size, buf, trace):
    with open(path, "rb") as f:
        f.seek(offset)
        while size:
            n = f.readinto(buf)
            if not n:
                raise Refused("short read from " + path)
            n = min(n, size)
            chunk = memoryview(buf)[:n]
            out.write(chunk)
            h.update(chunk)
            size -= n
            if trace:
                out.flush()
                trace("copy")


def install(image, slot, offer, versions, emit, trace=None):
    """Check the parts, assemble the inactive slot, switch. Returns the event; Refused.
    Manifests are read line by line (ota.file_entries): this step holds only the files' paths
    and sizes, the layout and the running slot's offsets."""
    from protocol import romfs

    ota_dir = image + "/data/ota"
    fw = image + "/fw"
    man = ota_dir + "/man"
    buf = bytearray(_BUF)
    planned = {}
    with open(ota_dir + "/plan") as f:
        for line in f:
            word = line.split()[0]
            planned[int(word)] = ota_dir + "/p" + word
    for i, (path, size, sha) in enumerate(_file_entries(man)):
        part = planned.get(i + 1)
        if part is None:
            continue
        if port.file_size(part) != size:
            raise Refused("size mismatch: " + path)
        if binascii.hexlify(_digest(part, buf)).decode() != sha:
            raise Refused("sha256 mismatch: " + path)
        _trace(trace, "part")
    head = _manifest_head(man)
    _status(ota_dir, "verified", 100, "", offer)
    emit({"event": "update", "status": "verified", "version": head["version"]})
    _trace(trace, "verified")
    _status(ota_dir, "installing", 100, "", offer)
    _trace(trace, "installing")
    other = _inactive(slot)
    old = _old_offsets(fw + "/" + slot + ".man")
    port.collect()
    active_img = fw + "/" + slot + ".img"
    tmp = fw + "/" + other + ".img.tmp"
    h = hashlib.sha256()
    files = _entries(man)
    with open(tmp, "wb") as out:
        for seg in romfs.walk(files):
            if not isinstance(seg, int):
                out.write(seg)
                h.update(seg)
                continue
            path, size = files[seg]
            if seg + 1 in planned:
                _copy(out, h, planned[seg + 1], 0, size, buf, trace)
            else:
                at = old.get(path)
                if at is None or at[1] != size:
                    raise Refused("unchanged file not in the running slot: " + path)
                _copy(out, h, active_img, at[0], size, buf, trace)
        port.flush_durable(out)
    if binascii.hexlify(h.digest()).decode() != head["image"][1] or \
            port.file_size(tmp) != head["image"][0]:
        port.remove(tmp)
        raise Refused("image sha256 mismatch: the slot came out different")
    _trace(trace, "image")
    port.replace(tmp, fw + "/" + other + ".img")
    _trace(trace, "slot")
    _copy_file(man, fw + "/" + other + ".man", 0, buf)
    _trace(trace, "manifest")
    boot = {"active": slot, "trial": other, "tries": 0, other: head["version"]}
    boot[slot] = versions.get(slot, "")
    port.write_atomic(fw + "/boot.json", json.dumps(boot).encode())  # the switch
    _trace(trace, "switch")
    _status(ota_dir, "rebooting", 100, "", offer)
    _trace(trace, "rebooting")
    _clean(ota_dir)
    return {"event": "update", "status": SWITCHED, "version": head["version"], "slot": other}


def _manifest_head(path):
    """The version and image (size, sha256) lines of a manifest file, read line by line."""
    head = {}  # type: dict
    with open(path, "rb") as f:
        f.seek(_SIG_BYTES)
        while True:
            line = f.readline()
            if not line or line.startswith(b"file "):
                break
            word, _, rest = line.strip().decode().partition(" ")
            if word == "version":
                head["version"] = rest
            elif word == "image":
                size, sha = rest.split(" ")
                head["image"] = (int(size), sha)
    return head


def run(image, slot, versions, product, emit, trace=None):
    """The step data/ota/ calls for; returns (event, reset wanted). Never raises for a bad
    update: a refusal is a "failure" status with its reason and the download is dropped.
    `trace(what)`, for the power-cut tests, is called after every write to flash."""
    ota_dir = image + "/data/ota"
    try:
        offer = json.loads(port.read_bytes(ota_dir + "/offer.json"))
    except (OSError, ValueError):
        _clean(ota_dir)
        return {"event": "update", "status": "none"}, False
    if slot is None or versions.get("trial") == slot:
        _clean(ota_dir)  # switched already (a cut before the clean-up): the trial runs
        return {"event": "update", "status": "none"}, False
    try:
        if not port.exists(ota_dir + "/plan"):
            pub = port.read_bytes(image + "/keys/release.pub")
            return check(image, slot, versions.get(slot, ""), product, offer, pub, trace), False
        if not _parts_complete(ota_dir):  # planned already (a cut before "go" went)
            port.remove(ota_dir + "/go")
            return {"event": "update", "status": CHECKED}, False
        return install(image, slot, offer, versions, emit, trace), True
    except (Refused, ValueError, OSError) as e:
        reason = str(e) or type(e).__name__
        _status(ota_dir, "failure", 0, reason, offer)
        _clean(ota_dir)
        return {"event": "update", "status": "failure", "reason": reason}, False
