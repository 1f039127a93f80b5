"""`fleetloop gateway ping DEVICE`: an MQTT round trip to one device, with its time.

A one-shot aiomqtt client (no manual acks needed here) connects to the gateway's broker as the
technician (gateway.tech_identity: the gateway's own certificate is in use by the gateway),
subscribes to `fleet/<id>/pong`, publishes a fresh token on `fleet/<id>/ping` and times the
echo (protocol.topics: 1..MAX_PING_BYTES printable bytes, echoed as they are).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiomqtt

from gateway.errors import DiagError
from gateway.tech_identity import CN, TechIdentity
from protocol import topics


class BrokerUnreachable(DiagError):
    """The broker did not take the technician's connection (gateway down, or refused)."""


@dataclass(frozen=True)
class Reply:
    seq: int
    token: str
    rtt_ms: float | None  # None: no answer within the timeout

    def to_obj(self) -> dict[str, object]:
        return {"seq": self.seq, "token": self.token, "rtt_ms": self.rtt_ms}


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    identity: TechIdentity

    def tls(self) -> aiomqtt.TLSParameters:
        for path in (self.identity.cert, self.identity.key, self.identity.ca_cert):
            if not path.is_file():
                raise DiagError(
                    f"no technician identity ({path} is missing): the gateway issues one at "
                    "its start when the device CA's key is on this box; elsewhere the factory "
                    f"issues a client certificate with CN {CN} from the device CA")
        return aiomqtt.TLSParameters(ca_certs=str(self.identity.ca_cert),
                                     certfile=str(self.identity.cert),
                                     keyfile=str(self.identity.key), cert_reqs=ssl.CERT_REQUIRED)


def token(seq: int) -> str:
    """A token of printable ASCII within protocol.topics.MAX_PING_BYTES, new for every ping."""
    value = f"p{seq}-{secrets.token_hex(8)}"
    return value[:topics.MAX_PING_BYTES]


@contextlib.asynccontextmanager
async def _session(target: Target, timeout_s: float) -> AsyncIterator[aiomqtt.Client]:
    client = aiomqtt.Client(target.host, target.port, identifier=CN, tls_params=target.tls(),
                            protocol=aiomqtt.ProtocolVersion.V311, clean_session=True,
                            timeout=timeout_s, keepalive=30)
    try:
        await client.__aenter__()
    except aiomqtt.MqttError as exc:
        raise BrokerUnreachable(f"cannot connect to the broker at {target.host}:{target.port} "
                                f"as the technician: {exc} (is the gateway running?)") from exc
    try:
        yield client
    finally:
        with contextlib.suppress(aiomqtt.MqttError):
            await client.__aexit__(None, None, None)


async def _one(client: aiomqtt.Client, device: str, seq: int, timeout_s: float) -> Reply:
    sent = token(seq)
    start = time.perf_counter()
    # QoS 0 like the echo: no PUBACK ahead of the pong (a second small write the broker would
    # hold back for the first one's TCP ack: +40 ms), and a lost ping is what ping reports.
    await client.publish(topics.topic(device, topics.PING), sent.encode(), qos=0)
    try:
        async with asyncio.timeout(timeout_s):
            async for msg in client.messages:
                if msg.payload == sent.encode():  # an older ping's late echo is not this one
                    return Reply(seq, sent, round((time.perf_counter() - start) * 1000, 2))
    except TimeoutError:
        pass
    return Reply(seq, sent, None)


async def ping_async(target: Target, device: str, count: int, timeout_s: float,
                     interval_s: float = 1.0) -> list[Reply]:
    if not topics.valid_device_id(device):
        raise DiagError(f"invalid device id {device!r}: 1-64 of [A-Za-z0-9_-], not starting "
                        "with - or _")
    replies = []
    async with _session(target, max(timeout_s, 5.0)) as client:
        await client.subscribe(topics.topic(device, topics.PONG), qos=0)
        for seq in range(1, count + 1):
            if seq > 1:
                await asyncio.sleep(interval_s)
            replies.append(await _one(client, device, seq, timeout_s))
    return replies


def ping(target: Target, device: str, count: int = 1, timeout_s: float = 2.0,
         interval_s: float = 1.0) -> list[Reply]:
    """Ping `device` `count` times; one Reply each (rtt None when unanswered)."""
    if count < 1 or timeout_s <= 0:
        raise DiagError("count must be >= 1 and timeout > 0")
    return asyncio.run(ping_async(target, device, count, timeout_s, interval_s))


def summary(device: str, replies: list[Reply], timeout_s: float) -> str:
    got = [r.rtt_ms for r in replies if r.rtt_ms is not None]
    head = f"{device}: {len(got)} of {len(replies)} answered"
    if not got:
        return (f"{head}: no answer within {timeout_s:g} s. Check that the device is online "
                "(`fleetloop gateway diag`: devices table), that its firmware answers pings, "
                "and its link error")
    return (f"{head}, round trip min {min(got):.1f} / avg {sum(got) / len(got):.1f} / "
            f"max {max(got):.1f} ms")
