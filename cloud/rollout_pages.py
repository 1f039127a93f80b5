"""The rollouts' pages of the dashboard: the list, and a rollout's page with a stacked bar per
wave (its devices by update word, an SVG in the charts' style: presentation attributes, no
script, every text escaped), its waves, its devices and the devices it left out."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from urllib.parse import quote

from cloud.render import Viewer, device_href, format_time, layout, link, table
from cloud.services.rollouts import View
from protocol import ota

# One colour per word, from waiting (grey) through working (blues) to the verdicts.
COLOURS = {
    ota.PENDING: "#d0d7de", ota.OFFERED: "#afb8c1", ota.DOWNLOADING: "#9cc3e6",
    ota.VERIFIED: "#6ea8dc", ota.INSTALLING: "#3d8bd4", ota.REBOOTING: "#1f6feb",
    ota.COMMITTED: "#8fd19e", ota.SUCCESS: "#1e7b34", ota.ROLLED_BACK: "#e0a040",
    ota.FAILURE: "#b3261e",
}
WIDTH, LEFT, RIGHT, ROW, TOP = 720, 150, 16, 30, 30


def rollout_href(rollout_id: str) -> str:
    return "/rollouts/" + quote(rollout_id, safe="")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts[w]} {w}" for w in ota.STATUSES if counts.get(w)) or "none"


def _state(view: View) -> str:
    r = view.rollout
    why = f" <small>{escape(r.reason)}</small>" if r.reason else ""
    return f'<span class="rollout-state {escape(r.state)}">{escape(r.state)}</span>{why}'


def wave_bars(view: View) -> str:
    """One horizontal bar per wave, split by word in protocol.ota.STATUSES order."""
    plot = WIDTH - LEFT - RIGHT
    height = TOP + ROW * len(view.waves) + 44
    out = [f'<svg class="chart waves" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}"'
           f' height="{height}" role="img" data-name="waves" data-waves="{len(view.waves)}"'
           ' font-family="system-ui, sans-serif" font-size="11">',
           "<title>devices of each wave by update word</title>",
           f'<text class="chart-title" x="{LEFT}" y="16" font-size="13" font-weight="600"'
           ' fill="#1d2329">devices of each wave by update word</text>']
    for i, w in enumerate(view.waves):
        y = TOP + i * ROW
        counts = view.counts(w.wave)
        started = "started" if w.started_ms is not None else "waiting"
        out.append(f'<g class="wave" data-wave="{w.wave}" data-size="{w.size}"'
                   f' data-started="{"true" if w.started_ms is not None else "false"}">')
        out.append(f'<text class="wave-label" x="{LEFT - 8}" y="{y + 15}" text-anchor="end"'
                   f' fill="#5b6670">wave {w.wave} ({w.percent:g}%, {w.size}) {started}</text>')
        out.append(f'<rect class="plot-area" x="{LEFT}" y="{y + 2}" width="{plot}"'
                   f' height="{ROW - 8}" fill="#fafbfc" stroke="#c9d1d9"/>')
        x = float(LEFT)
        for word in ota.STATUSES:
            n = counts.get(word, 0)
            if not n:
                continue
            width = plot * n / max(1, w.size)
            out.append(f'<rect class="seg" data-word="{word}" data-count="{n}" x="{x:.1f}"'
                       f' y="{y + 2}" width="{width:.1f}" height="{ROW - 8}"'
                       f' fill="{COLOURS[word]}"><title>{n} {word}</title></rect>')
            x += width
        out.append("</g>")
    legend_y = TOP + ROW * len(view.waves) + 14
    for i, word in enumerate(ota.STATUSES):  # two rows of five
        x, y = LEFT + (i % 5) * 112, legend_y + (i // 5) * 15
        out.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{COLOURS[word]}"/>'
                   f'<text x="{x + 13}" y="{y}" fill="#5b6670">{word}</text>')
    out.append("</svg>")
    return "".join(out)


def rollouts_page(views: Sequence[View], viewer: Viewer | None = None) -> str:
    rows = []
    for v in views:
        r = v.rollout
        current = max((w.wave for w in v.waves if w.started_ms is not None), default=0)
        rows.append([link(rollout_href(r.id), r.id), escape(r.bundle),
                     escape(f"{r.product} {r.version}"), _state(v),
                     f"{current} of {len(v.waves)}", escape(_counts(v.counts())),
                     escape(format_time(r.created_ms)) + f"<br><small>by {escape(r.created_by)}"
                     "</small>"])
    body = ('<h1 id="rollouts">Rollouts</h1>'
            + table("rollout-list", ("Rollout", "Bundle", "Version", "State", "Wave",
                                      "Devices", "Created (UTC)"), rows,
                     "No rollouts yet (fleetloop rollout create)."))
    return layout("fleetloop: rollouts", body, [link("/rollouts", "Rollouts")], viewer=viewer)


def rollout_page(view: View, viewer: Viewer | None = None) -> str:
    r = view.rollout
    target = (f"cohort {r.target['cohort']}" if "cohort" in r.target
              else f"{len(r.target.get('devices', []))} listed devices")
    heading = (
        f'<h1 id="rollout" data-rollout="{escape(r.id)}" data-state="{escape(r.state)}">'
        f"{escape(r.id)} <small>{escape(r.bundle)} to {escape(target)} &middot; "
        f"{_state(view)}</small></h1>"
        f'<p class="meta" id="settings">waves {escape(", ".join(f"{p:g}%" for p in r.waves))}'
        f" &middot; soak {r.soak_s} s &middot; failure threshold {r.failure_threshold:.0%}"
        f" &middot; deadline {r.deadline_s} s &middot; heap ratio {r.heap_ratio:.0%} &middot;"
        f" created {escape(format_time(r.created_ms))} UTC by {escape(r.created_by)}</p>")
    wave_rows = [[str(w.wave), f"{w.percent:g}%", f'<span class="num">{w.size}</span>',
                  escape(_counts(view.counts(w.wave))), escape(format_time(w.started_ms)),
                  escape(format_time(None if w.started_ms is None
                                     else w.started_ms + r.soak_s * 1000))]
                 for w in view.waves]
    device_rows = [[link(device_href(d.device), d.device), str(d.wave),
                    f'<span class="word {escape(d.word)}">{escape(d.word)}</span>',
                    "" if d.progress is None else f"{d.progress}%", escape(d.reason),
                    escape(d.version or ""), escape(format_time(d.since_ms))]
                   for d in view.devices]
    skipped = [[link(device_href(d), d), escape(why)] for d, why in r.skipped]
    body = (
        heading
        + f'<div class="charts"><figure class="rollout" data-name="waves">{wave_bars(view)}'
        "</figure></div>"
        + "<h2>Waves</h2>"
        + table("waves", ("Wave", "Percent", "Devices", "Words", "Started (UTC)",
                           "Soak until (UTC)"), wave_rows, "No waves.")
        + "<h2>Devices</h2>"
        + table("rollout-devices", ("Device", "Wave", "Word", "Progress", "Reason",
                                     "Firmware", "Since (UTC)"), device_rows, "No devices.")
        + "<h2>Left out</h2>"
        + table("skipped", ("Device", "Why"), skipped, "No device was left out.")
    )
    return layout(f"fleetloop: rollout {r.id}", body,
                  [link("/rollouts", "Rollouts"), link(rollout_href(r.id), r.id)], viewer=viewer)
