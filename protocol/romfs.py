"""The ROMFS image a set of files makes, byte for byte (MicroPython's read-only filesystem, as
mpremote's VfsRomWriter writes it), computed from the files' paths and sizes alone.

A slot of the device is one ROMFS image. An update carries only the files that changed; the
device assembles the new image from those and the unchanged files of its running slot, and
checks the result against the image sha256 of the signed manifest. The factory builds its
images with the same layout(), so the two can never disagree (tests pin it against mpremote's
writer). Common subset: the device's installer runs it on a fresh heap.

Format: every record is kind (varuint), length (varuint), payload; varuints are big-endian
groups of 7 bits, high bit set on all but the last. A file record's payload is its name
(length-prefixed) and a verbatim-data record; a directory's is its name and its entries,
sorted by name. The image is a 3-byte header, the length of the root's entries (with one
redundant 0x80 group when that makes the image's size odd) and the entries.
"""

HEADER = b"\xd2\xcd\x31"
_DATA = 2
_DIR = 4
_FILE = 5


def uint(n):
    groups = [n & 0x7F]
    n >>= 7
    while n:
        groups.append(0x80 | (n & 0x7F))
        n >>= 7
    groups.reverse()
    return bytes(groups)


def _tree(files):
    """{name: subtree or file index} of [(path, size), ...]; ValueError for a path that is a
    file and a directory at once."""
    root = {}  # type: dict
    for i, (path, _) in enumerate(files):
        parts = path.split("/")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError("path " + path + " runs through a file")
        if parts[-1] in node:
            raise ValueError("path " + path + " given twice or as a directory")
        node[parts[-1]] = i
    return root


def _ulen(n):
    """len(uint(n)), without making it."""
    k = 1
    while n >= 0x80:
        n >>= 7
        k += 1
    return k


def _file_len(name_len, size):
    inner = _ulen(name_len) + name_len + _ulen(_DATA) + _ulen(size) + size
    return _ulen(_FILE) + _ulen(inner) + inner


def _file_head(name, size):
    payload_head = uint(len(name)) + name + uint(_DATA) + uint(size)
    return uint(_FILE) + uint(len(payload_head) + size) + payload_head


def _dir_inner(name_len, body):
    return _ulen(name_len) + name_len + body


def _size(node, files):
    """Bytes of a directory's entries (integers only: a device assembles images with this)."""
    n = 0
    for name in node:
        sub = node[name]
        if isinstance(sub, dict):
            inner = _dir_inner(len(name), _size(sub, files))
            n += _ulen(_DIR) + _ulen(inner) + inner
        else:
            n += _file_len(len(name), files[sub][1])
    return n


def _emit(node, files):
    for name in sorted(node):
        sub = node[name]
        raw = name.encode()
        if isinstance(sub, dict):
            inner = _dir_inner(len(raw), _size(sub, files))
            yield uint(_DIR) + uint(inner) + uint(len(raw)) + raw
            for seg in _emit(sub, files):
                yield seg
        else:
            yield _file_head(raw, files[sub][1])
            yield sub


def walk(files):
    """The image of `files` ([(path, size), ...]) as segments, one at a time: bytes (headers,
    written as they are) or an int (that file's content, by index), in order. Names are ASCII
    (the factory refuses others), so a name's length is its byte length."""
    root = _tree(files)
    body = _size(root, files)
    length = uint(body)
    if (len(HEADER) + len(length) + body) % 2 == 1:
        length = b"\x80" + length
    yield HEADER + length
    for seg in _emit(root, files):
        yield seg


def layout(files):
    """walk() as a list."""
    return list(walk(files))


def offsets(files):
    """{index: offset in the image} of each file of `files`."""
    where = {}
    at = 0
    for seg in walk(files):
        if isinstance(seg, int):
            where[seg] = at
            at += files[seg][1]
        else:
            at += len(seg)
    return where


def build(files, contents):
    """The image's bytes (CPython side, the factory): `contents[i]` is files[i]'s bytes."""
    out = bytearray()
    for seg in walk(files):
        out += contents[seg] if isinstance(seg, int) else seg
    return bytes(out)
