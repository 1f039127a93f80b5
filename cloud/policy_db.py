"""The SQL of policies as experiments (cloud.policy_store.PolicyStore). A mixin of
cloud.db.SqliteStore, so PostgreSQL's store runs it too; the statements keep to what both
accept, like the rest of cloud.db."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cloud.policy_store import EvaluationRow, PolicyDeviceRow, PolicyLayer, PolicyRow
from cloud.store import DeviceRow

if TYPE_CHECKING:
    from cloud.db import Connection

_COLS = ("id, name, product, spec, seed, state, reason, created_ms, created_by,"
         " window_start_ms, window_end_ms, extensions, updated_ms")
_IN_CHUNK = 500  # ids per IN (...) list


def _text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _policy(r: Sequence[Any]) -> PolicyRow:
    return PolicyRow(id=int(r[0]), name=r[1], product=r[2], spec=json.loads(r[3]),
                     seed=int(r[4]), state=r[5], reason=r[6], created_ms=int(r[7]),
                     created_by=r[8], window_start_ms=int(r[9]), window_end_ms=int(r[10]),
                     extensions=int(r[11]), updated_ms=int(r[12]))


class PolicySql:
    """PolicyStore over SqliteStore's connection (`?` placeholders, rows as tuples)."""

    _conn: Connection

    def insert_policy(self, row: PolicyRow) -> int:
        r = self._conn.execute(
            f"INSERT INTO policies ({_COLS.replace('id, ', '', 1)}) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (row.name, row.product, _text(row.spec), row.seed, row.state, row.reason,
             row.created_ms, row.created_by, row.window_start_ms, row.window_end_ms,
             row.extensions, row.updated_ms)).fetchall()
        return int(r[0][0])

    def _policies(self, where: str, params: Sequence[Any]) -> list[PolicyRow]:
        return [_policy(r) for r in
                self._conn.execute(f"SELECT {_COLS} FROM policies {where}", params)]

    def get_policy(self, policy_id: int) -> PolicyRow | None:
        found = self._policies("WHERE id = ?", (policy_id,))
        return found[0] if found else None

    def policy_by_name(self, name: str) -> PolicyRow | None:
        found = self._policies("WHERE name = ?", (name,))
        return found[0] if found else None

    def list_policies(self) -> list[PolicyRow]:
        return self._policies("ORDER BY id DESC", ())

    def running_policies(self) -> list[PolicyRow]:
        return self._policies("WHERE state = 'running' ORDER BY id", ())

    def save_policy_state(self, row: PolicyRow) -> None:
        self._conn.execute(
            "UPDATE policies SET state = ?, reason = ?, window_start_ms = ?, window_end_ms = ?,"
            " extensions = ?, updated_ms = ? WHERE id = ?",
            (row.state, row.reason, row.window_start_ms, row.window_end_ms, row.extensions,
             row.updated_ms, row.id))

    def insert_policy_devices(self, rows: Sequence[PolicyDeviceRow]) -> None:
        self._conn.executemany(
            "INSERT INTO policy_devices (policy, device, arm, reason) VALUES (?, ?, ?, ?)",
            [(r.policy, r.device, r.arm, r.reason) for r in rows])

    def policy_devices(self, policy_id: int) -> list[PolicyDeviceRow]:
        rows = self._conn.execute(
            "SELECT policy, device, arm, reason FROM policy_devices WHERE policy = ?"
            " ORDER BY device", (policy_id,))
        return [PolicyDeviceRow(int(r[0]), r[1], r[2], r[3]) for r in rows]

    def policy_record_clock(self, policy_id: int) -> int | None:
        # one indexed read of the policy's devices, however large the fleet
        row = self._conn.execute(
            "SELECT MAX(v.last_seen_ms) FROM policy_devices d JOIN devices v ON v.id = d.device"
            " WHERE d.policy = ? AND d.arm IN ('treatment', 'control')", (policy_id,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def policy_heard(self, policy_id: int, since_ms: int) -> dict[str, tuple[int, int]]:
        # one indexed read of the policy's devices; each judged by DeviceRow.heard_past
        rows = self._conn.execute(
            "SELECT d.arm, v.id, v.last_seen_ms, v.last_seq, v.incarnation, v.reported"
            " FROM policy_devices d JOIN devices v ON v.id = d.device"
            " WHERE d.policy = ? AND d.arm IN ('treatment', 'control')", (policy_id,))
        out: dict[str, tuple[int, int]] = {}
        for arm, device, seen, last_seq, incarnation, reported in rows:
            row = DeviceRow(id=device, product=None, created_ms=0, last_seen_ms=seen,
                            last_seq=int(last_seq), incarnation=int(incarnation),
                            reported=None if reported is None else json.loads(reported))
            n, past = out.get(arm, (0, 0))
            out[arm] = (n + 1, past + row.heard_past(since_ms))
        return out

    def running_policy_of(self, device_ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        ids = sorted(set(device_ids))
        for at in range(0, len(ids), _IN_CHUNK):
            chunk = ids[at:at + _IN_CHUNK]
            rows = self._conn.execute(
                "SELECT d.device, d.policy FROM policy_devices d JOIN policies p"
                " ON p.id = d.policy WHERE p.state = 'running'"
                " AND d.arm IN ('treatment', 'control')"
                f" AND d.device IN ({', '.join('?' * len(chunk))})", chunk)
            out.update({r[0]: int(r[1]) for r in rows})
        return out

    def policy_layers(self, device_ids: Sequence[str] | None = None) -> list[PolicyLayer]:
        sql = ("SELECT d.policy, d.device, p.spec FROM policy_devices d JOIN policies p"
               " ON p.id = d.policy WHERE ((p.state = 'running' AND d.arm = 'treatment')"
               " OR (p.state = 'kept' AND d.arm IN ('treatment', 'control')))")
        chunks: list[list[str]] = [[]] if device_ids is None else [
            sorted(set(device_ids))[at:at + _IN_CHUNK]
            for at in range(0, len(set(device_ids)), _IN_CHUNK)]
        out: list[PolicyLayer] = []
        specs: dict[int, dict[str, Any]] = {}
        for chunk in chunks:
            where = "" if device_ids is None else (
                f" AND d.device IN ({', '.join('?' * len(chunk))})")
            for r in self._conn.execute(sql + where + " ORDER BY d.policy, d.device", chunk):
                policy = int(r[0])
                if policy not in specs:
                    specs[policy] = json.loads(r[2])
                out.append(PolicyLayer(policy, r[1], dict(specs[policy]["change"])))
        out.sort(key=lambda layer: (layer.policy, layer.device))
        return out

    def insert_evaluation(self, row: EvaluationRow) -> None:
        self._conn.execute(
            "INSERT INTO policy_evaluations (policy, n, at_ms, evidence) VALUES (?, ?, ?, ?)",
            (row.policy, row.n, row.at_ms, _text(row.evidence)))

    def evaluations(self, policy_id: int) -> list[EvaluationRow]:
        rows = self._conn.execute(
            "SELECT policy, n, at_ms, evidence FROM policy_evaluations WHERE policy = ?"
            " ORDER BY n", (policy_id,))
        return [EvaluationRow(int(r[0]), int(r[1]), int(r[2]), json.loads(r[3])) for r in rows]
