"""`fleetloop bench ota`: what an update costs. Three figures, each measured here:

- **Bytes on the air** for a one-module change, per product: what a device fetches for the
  delta (its file 0, the manifest patch, and the changed files, with each chunk's head and
  each fetch) against what it would fetch for the full bundle (file 0, the whole manifest, and
  every file), and the delta bundle's size against the full bundle's.
- **Peak heap of an install**, per product: the smallest MicroPython heap (`-X heapsize`, in
  KB) at which the device's two heavy steps succeed from its compiled ROMFS slot, as main.py
  runs them at a start: `check` (rebuild the manifest, Ed25519 over its digest, the rules,
  the plan) and `install` (every part's sha256, the new slot assembled and checked, the
  switch). The budget: under 64 KB.
- **A rollout behind one gateway** (fleetloop.fleet.rollout_bench): how long a wave of
  simulated devices plus a few on real MicroPython takes to finish, and how often the gateway
  downloaded the bundle from the cloud (the target is once per version).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from protocol import bundle, ota

HEAP_BUDGET_KB = 64
_FETCH_BYTES = 40  # a fetch's JSON payload, about
_MQTT_OVERHEAD = 2 + 2 + len("fleet/bike-1/chunk")  # fixed header, topic length, topic


def on_air(file0: bytes, files: list[bytes]) -> int:
    """Bytes a device receives and sends to fetch `file0` and `files` in chunks."""
    total = 0
    for data in [file0, *files]:
        chunks = max(1, -(-len(data) // ota.CHUNK_BYTES))
        fetches = max(1, -(-chunks // 4))
        total += len(data) + chunks * (ota.CHUNK_HEAD + _MQTT_OVERHEAD) + fetches * _FETCH_BYTES
    return total


def _two_versions(home: Path, product: str) -> tuple[Any, Any]:
    """The product's release at the device package's version and the next patch version with
    its profile module changed, from a temporary copy of the sources (fwtool.delta's way)."""
    from fwtool.delta import CHANGE
    from fwtool.provision import firmware_version, package_dir
    from fwtool.release import build_release

    dev_src = package_dir("device")
    old_version = firmware_version(dev_src)
    major, minor, patch = ota.parse_version(old_version)
    with tempfile.TemporaryDirectory(prefix="fleetloop-bench-ota-") as tmp:
        copy = Path(tmp) / "device"
        shutil.copytree(dev_src, copy, ignore=shutil.ignore_patterns("__pycache__"))
        old = build_release(home, product, old_version, device_src=copy)
        module = copy / "profiles" / f"{product}.py"
        module.write_text(module.read_text() + CHANGE)
        new = build_release(home, product, f"{major}.{minor}.{patch + 1}", device_src=copy)
    return old, new


def delta_figures(home: Path, product: str, old: Any, new: Any) -> dict[str, Any]:
    from fwtool.delta import make_delta
    from fwtool.keys import KeyLayout

    pub = KeyLayout.of_home(home).release_pub.read_bytes()
    delta = make_delta(old.data, new.data, pub)
    opened = bundle.read(delta.data)
    full = bundle.read(new.data)
    changed = [opened.files[i] for i in sorted(opened.files)]
    air_delta = on_air(opened.signed_manifest, changed)
    air_full = on_air(full.signed_manifest, [full.files[i] for i in sorted(full.files)])
    return {"product": product, "full_bytes": len(new.data), "delta_bytes": len(delta.data),
            "changed_file_bytes": sum(len(c) for c in changed), "files": list(delta.files),
            "air_delta_bytes": air_delta, "air_full_bytes": air_full,
            "air_ratio": round(air_delta / air_full, 4)}


def _stage_update(image: Path, new: Any, step: str) -> None:
    """data/ota/ as the agent leaves it when it stops for `step` ("check": file 0 is here;
    "install": every planned part is here too), with data/ota/go."""
    ota_dir = image / "data" / "ota"
    shutil.rmtree(ota_dir, ignore_errors=True)
    ota_dir.mkdir(parents=True)
    file0 = bundle.read(new.data).signed_manifest
    offer = {"v": 1, "id": new.id, "product": new.product, "version": new.version,
             "size": len(file0), "rollout": "r-bench"}
    (ota_dir / "offer.json").write_text(json.dumps(offer))
    (ota_dir / "f0").write_bytes(file0)
    if step == "install":
        installed = (image / "fw" / "a.man").read_bytes()[ota.SIG_BYTES:].decode()
        old = {p: (s, h) for p, s, h in ota.parse_manifest(installed)["files"]}
        plan = []
        for i, (path, data) in enumerate(new.files, start=1):
            entry = ota.parse_manifest(new.text)["files"][i - 1]
            if old.get(path) != (entry[1], entry[2]):
                plan.append(f"{i} {len(data)}\n")
                (ota_dir / f"p{i}").write_bytes(data)
        (ota_dir / "man").write_bytes(file0)
        (ota_dir / "plan").write_text("".join(plan))
    (ota_dir / "go").write_bytes(b"")


def _step_at(image: Path, heap_kb: int, timeout: float = 60.0) -> str:
    """Start the device at `heap_kb` with an update step due; the step's outcome: "checked",
    "switched", "failure: ..." or "memory" (it did not fit)."""
    from fleetloop.device_runner import device_command

    argv, env, cwd = device_command(image, "micropython", heap=f"{heap_kb}K")
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    outcome = "no outcome"
    try:
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "update" and event.get("status") in (
                    "checked", "switched", "failure"):
                outcome = str(event["status"])
                if outcome == "failure":
                    outcome += ": " + str(event.get("reason"))
                break
            if event.get("event") == "reset" and event.get("cause") == "memory":
                outcome = "memory"
                break
    finally:
        proc.kill()
        proc.wait(timeout)
    return outcome


def _smallest(fits: Callable[[int], bool], low: int, high: int) -> int | None:
    """The smallest heap in [low, high] KB that fits (bisection; None if high does not)."""
    if not fits(high):
        return None
    while high - low > 1:
        mid = (low + high) // 2
        if fits(mid):
            high = mid
        else:
            low = mid
    return high


def install_heap(home: Path, product: str, old: Any, new: Any,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """The smallest heap each heavy step of an install succeeds at, for `product`."""
    from fwtool.provision import provision

    result: dict[str, Any] = {"product": product}
    image = home / "devices" / f"{product}-ota"
    shutil.rmtree(image, ignore_errors=True)
    provision(home, f"{product}-ota", product, "localhost", 1, out=image, bundle=old.data)
    for step, want in (("check", "checked"), ("install", "switched")):
        pristine = image.parent / f"{image.name}.pristine"
        shutil.rmtree(pristine, ignore_errors=True)
        shutil.copytree(image, pristine)

        def fits(kb: int, step: str = step, want: str = want, pristine: Path = pristine) -> bool:
            shutil.rmtree(image)
            shutil.copytree(pristine, image)
            _stage_update(image, new, step)
            outcome = _step_at(image, kb)
            log(f"{product} {step} at {kb} KB: {outcome}")
            if outcome not in (want, "memory", "no outcome"):
                raise RuntimeError(f"{product} {step}: {outcome}")
            return outcome == want

        result[f"{step}_kb"] = _smallest(fits, 16, 128)
        shutil.rmtree(image)
        shutil.copytree(pristine, image)
        shutil.rmtree(pristine)
    peaks = [result["check_kb"], result["install_kb"]]
    result["peak_kb"] = None if None in peaks else max(peaks)
    result["fits_budget"] = result["peak_kb"] is not None and result["peak_kb"] <= HEAP_BUDGET_KB
    return result


def bench_ota(products: tuple[str, ...] = ("bike", "mirror", "engine"),
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Delta bytes and install heap per product (the rollout figures: fleet.rollout_bench)."""
    from fwtool import keys

    out: dict[str, Any] = {"deltas": [], "install_heap": [], "heap_budget_kb": HEAP_BUDGET_KB}
    with tempfile.TemporaryDirectory(prefix="fleetloop-bench-ota-") as tmp:
        home = Path(tmp) / "home"
        keys.generate(home, [], [f"{p}-ota" for p in products])
        for product in products:
            log(f"{product}: building two versions")
            old, new = _two_versions(home, product)
            out["deltas"].append(delta_figures(home, product, old, new))
            out["install_heap"].append(install_heap(home, product, old, new, log))
    return out


def ota_table(result: dict[str, Any]) -> str:
    """The docs table (between the markers in docs/benchmarks.md)."""
    rows = ["| product | full bundle | delta bundle | changed files | on the air: delta / full "
            "| install peak heap (check / install) |",
            "|---|---|---|---|---|---|"]
    heaps = {h["product"]: h for h in result.get("install_heap", [])}
    for d in result.get("deltas", []):
        h = heaps.get(d["product"], {})
        rows.append(
            f"| {d['product']} | {d['full_bytes']:,} B | {d['delta_bytes']:,} B "
            f"({100 * d['delta_bytes'] / d['full_bytes']:.1f}%) | {d['changed_file_bytes']:,} B "
            f"| {d['air_delta_bytes']:,} / {d['air_full_bytes']:,} B ({100 * d['air_ratio']:.1f}%) "
            f"| {h.get('peak_kb')} KB ({h.get('check_kb')} / {h.get('install_kb')}) |")
    rollout = result.get("rollout")
    if rollout:
        rows += ["", f"Rollout: {rollout['devices']} devices behind one gateway "
                 f"({rollout['real']} on real MicroPython) finished in {rollout['finish_s']} s "
                 f"(soak {rollout['soak_s']} s); the gateway downloaded the bundle from the cloud "
                 f"{rollout['cloud_downloads']} time(s)."]
    return "\n".join(rows)


if __name__ == "__main__":  # a quick look: python -m fleetloop.bench_ota bike
    print(json.dumps(bench_ota(tuple(sys.argv[1:]) or ("bike",)), indent=2))
