"""`fleetloop fw verify`: every reason a bundle file must be refused, as a device, the cloud and
the gateway would refuse it (protocol.bundle.read + verify), in words for the person holding
the file.

A full bundle is checked whole: its layout, the release key's signature over its manifest, the
manifest's rules (paths, sizes, versions), every file's size and sha256, and the ROMFS image
they make. A delta's signature covers the whole new manifest, which only its base's manifest
can rebuild: with the base's full bundle (--base) it is checked like a full one; without it,
what can be checked is (its layout and its files against the patch) and the missing signature
check is a reason of its own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from protocol import bundle, ota


@dataclass(frozen=True)
class Report:
    """What `check` found: ok when there is no problem."""

    size: int
    problems: tuple[str, ...]
    kind: str | None = None
    product: str | None = None
    version: str | None = None
    min_version: str | None = None
    base: str | None = None
    files: int = 0  # files the bundle carries
    id: str | None = None  # the offer id (a delta's needs its base)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, object]:
        return {"ok": self.ok, "kind": self.kind, "product": self.product,
                "version": self.version, "min_version": self.min_version, "base": self.base,
                "files": self.files, "bytes": self.size, "id": self.id,
                "problems": list(self.problems)}

    def summary(self) -> str:
        """One line: what the bundle is."""
        what = f"{self.product} {self.version}"
        kind = "full bundle" if self.kind == "full" else f"delta over {self.base}"
        ident = f", id {self.id}" if self.id else ""
        files = f"{self.files} file" + ("" if self.files == 1 else "s")
        return f"{what} ({kind}, {files}, {self.size} bytes, min_version {self.min_version}{ident})"


def check(data: bytes, release_pub: bytes, base: bytes | None = None) -> Report:
    """Every reason to refuse bundle `data` under the raw 32-byte release public key; `base`
    is the full bundle a delta was made from (ignored for a full bundle)."""
    try:
        opened = bundle.read(data)
    except bundle.BundleError as exc:
        return Report(len(data), (str(exc),))
    if opened.kind == "full":
        return _report(data, opened, bundle.verify(opened, release_pub), opened.id())
    if base is None:
        why = (f"a delta over {opened.base}: its signature covers the whole manifest, which only "
               f"its base can rebuild; give --base with the full bundle of {opened.base}")
        return _report(data, opened, [why, *carried_problems(opened)])
    base_text, why = _base_text(opened, base)
    if base_text is None:
        return _report(data, opened, [why, *carried_problems(opened)])
    problems = bundle.verify(opened, release_pub, base_text)
    return _report(data, opened, problems, None if problems else opened.id(base_text))


def _report(data: bytes, opened: bundle.Bundle, problems: list[str],
            offer_id: str | None = None) -> Report:
    return Report(len(data), tuple(problems), opened.kind, opened.product, opened.version,
                  opened.min_version, opened.base, len(opened.files), offer_id)


def carried_problems(opened: bundle.Bundle) -> list[str]:
    """Each carried file whose size or sha256 differs from its own line in the manifest or
    patch (what can be checked without a signature)."""
    out = []
    for index, (path, size, sha) in zip(sorted(opened.files), opened.entries, strict=True):
        content = opened.files[index]
        if len(content) != size:
            out.append(f"{path}: size {len(content)}, manifest says {size}")
        elif hashlib.sha256(content).hexdigest() != sha:
            out.append(f"{path}: sha256 does not match the manifest")
    return out


def _base_text(delta: bundle.Bundle, base: bytes) -> tuple[str | None, str]:
    """(the base's manifest text, "") or (None, why it cannot serve as this delta's base)."""
    try:
        opened = bundle.read(base)
    except bundle.BundleError as exc:
        return None, f"--base: {exc}"
    if opened.kind != "full":
        return None, f"--base must be a full bundle; it is a delta over {opened.base}"
    if opened.product != delta.product or opened.version != delta.base:
        return None, (f"the delta is over {delta.product} {delta.base}; --base is "
                      f"{opened.product} {opened.version}")
    digest = hashlib.sha256(opened.text.encode()).hexdigest()
    if ota.parse_patch(delta.text)["base"][1] != digest:
        return None, (f"--base is another build of {delta.base}: its manifest is not the one "
                      "the delta was made from")
    return opened.text, ""
