"""`diag`'s rendering of a status, without a gateway: the hint line, the vitals table, and
text a device chose shown as it is (never read as markup)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from gateway.diag import hint_text, render


def _text(st: dict[str, Any]) -> str:
    console = Console(width=250, record=True, color_system=None)
    console.print(render(st, now_ms=1_000_000))
    return console.export_text()


def _vitals(device: str, **values: Any) -> dict[str, Any]:
    return {"device": device, "incarnation": 1, "t": 1, "received_ms": 990_000, **values}


def test_the_hint_line_says_what_is_in_effect_and_why() -> None:
    assert hint_text({}) == "-"
    assert hint_text({"min_reconnect_ms": None, "target_ms": 0, "source": "computed",
                      "known_devices": 0, "reconnect_rate": 100}) == (
        "not published yet (computed: 0 known devices at 100 connections/s; 0 ms waiting to "
        "be published)")
    assert hint_text({"min_reconnect_ms": 12000, "target_ms": 12000, "source": "setting"}) == (
        "devices wait at least 12000 ms before reconnecting (fixed by the min_reconnect_ms "
        "setting)")


def test_device_text_is_shown_as_it_is() -> None:
    """A refusal reason can quote a field name a device chose; a state's reason and link
    error are the device's words: brackets in them once could have broken the rendering."""
    st = {"ingest": {"rejected": 1,
                     "reject_reasons": {"bad state: unknown state field [/]": 1}},
          "vitals": {"total": 1, "devices": [_vitals(
              "bike-1", reason="[bold]bad[/bold] [/]", config_status="rejected",
              config_version=2, link_error="[red]", link_failures=3, reset_cause="crash",
              resets=1, consent="essential", uptime_s=200000, buffered=0)]}}
    text = _text(st)
    assert "1 x bad state: unknown state field [/]" in text
    [row] = [ln for ln in text.splitlines() if ln.startswith("bike-1")]
    assert "config 2 rejected: [bold]bad[/bold] [/]; link: [red] (x3); reset: crash (x1)" in row
    assert "essential" in row and "2d" in row and "0 rec" in row


def test_many_devices_are_cut_short_with_a_pointer_to_the_rest() -> None:
    rows = [_vitals(f"bike-{i:03d}", consent="usage") for i in range(60)]
    text = _text({"vitals": {"total": 300, "devices": rows}})
    assert "bike-049" in text and "bike-050" not in text
    assert "and 250 more device(s)" in text
