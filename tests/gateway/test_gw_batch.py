"""Batches: chained by digest, signed, atomic with the inbox, identical to the shared vectors."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gwkit import ROOT

from gateway.batch import Batcher
from gateway.seqs import SeqTracker
from gateway.store import InboxRecord, InboxState, Store, TrackerChange
from protocol import batch as batch_codec
from protocol import record as record_codec


def _put(store: Store, device: str, seqs: range, tracker: SeqTracker | None = None) -> None:
    before = tracker or SeqTracker(seqs.start - 1)
    after = before.copy()
    rows = []
    for s in seqs:
        assert after.accept(s)
        rows.append(InboxRecord(device, s, record_codec.encode_v1(device, s, s, {"n": s}), 0))
    store.commit_ingest(rows, [], [TrackerChange((device, 0), before, after, len(rows), 0)])


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "g.db")
    s.open()
    return s


def test_batches_chain_and_verify(store: Store) -> None:
    key = Ed25519PrivateKey.generate()
    batcher = Batcher(store, "gw-1", key, max_records=100, interval_s=1.0)
    _put(store, "bike-1", range(1, 251))
    assert batcher.flush() == 3
    assert store.inbox_count() == 0
    prev, seen = batch_codec.GENESIS, []
    for seq in (1, 2, 3):
        spooled = store.oldest_batch()
        assert spooled is not None and spooled.seq == seq
        batch, dig = batch_codec.open_sealed(spooled.body, spooled.signature, key.public_key())
        assert batch.prev == prev and dig == spooled.digest and batch.seq == seq
        seen += [json.loads(r)["s"] for r in batch.records]  # the devices' bytes
        prev = dig
        store.delete_batch(seq)
    assert seen == list(range(1, 251))
    assert store.head().seq == 3 and store.head().digest == prev
    assert batcher.flush() == 0  # nothing waits: no empty batches


def test_a_failed_seal_leaves_the_inbox_untouched(store: Store) -> None:
    class BrokenKey:
        def sign(self, data: bytes) -> bytes:
            raise RuntimeError("HSM unplugged")

    _put(store, "bike-1", range(1, 11))
    batcher = Batcher(store, "gw-1", BrokenKey(), 100, 1.0)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        batcher.seal_next()
    assert store.inbox_count() == 10 and store.spool_counts() == (0, 0)
    assert store.head().seq == 0


def test_the_chain_continues_across_restarts(store: Store, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    _put(store, "bike-1", range(1, 6))
    Batcher(store, "gw-1", key, 100, 1.0).flush()
    store.close()
    again = Store(tmp_path / "g.db")
    again.open()
    _put(again, "bike-1", range(6, 9), SeqTracker(5))
    Batcher(again, "gw-1", key, 100, 1.0).flush()
    first, second = again.oldest_batch(), None
    assert first is not None
    again.delete_batch(first.seq)
    second = again.oldest_batch()
    assert second is not None
    b2, _ = batch_codec.open_sealed(second.body, second.signature, key.public_key())
    assert b2.seq == 2 and b2.prev == first.digest


def test_batcher_reproduces_the_shared_batch_vectors(store: Store) -> None:
    vectors = json.loads((ROOT / "tests" / "vectors" / "batches.json").read_text())
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))  # the vectors' test seed
    chain = [json.loads(v["canonical"]) for v in vectors["chain"]]
    clock = iter([chain[0]["created"], chain[1]["created"]])
    batcher = Batcher(store, "gw-1", key, 100, 1.0, clock_ms=lambda: next(clock))
    for obj in chain:
        # the devices' exact bytes, as ingest stores them
        rows = [InboxRecord(json.loads(w)["d"], json.loads(w)["s"], w.encode(), 0)
                for w in obj["records"]]
        states = [InboxState(json.loads(w)["d"], w.encode(), 0) for w in obj["states"]]
        store.commit_ingest(rows, states, [])
        batcher.seal_next()
    for vector in vectors["chain"]:
        spooled = store.oldest_batch()
        assert spooled is not None
        assert spooled.digest == vector["digest"]
        assert spooled.signature == vector["signature"]
        assert base64.b64decode(spooled.signature)
        store.delete_batch(spooled.seq)
