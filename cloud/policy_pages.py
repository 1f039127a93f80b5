"""The policies' pages of the dashboard: the list, and a policy's page with its evidence: one
row per evaluation drawing the lift's 95% interval as a bar around zero (an SVG in the
charts' style: presentation attributes, no script, every text escaped), the arms' sizes and
mean outcome changes, the decision, the arms' devices, the devices left out and the policy's
audit trail (who created or stopped it, and every decision the cloud made with its evidence)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from typing import Any

from cloud.render import Viewer, device_href, format_time, layout, link, table
from cloud.services.policies import View
from cloud.store import AuditRow

WIDTH, LEFT, RIGHT, ROW, TOP = 720, 130, 56, 30, 30
COLOURS = {"keep": "#1e7b34", "revert": "#b3261e", "extend": "#8c959f"}
STATE_CLASS = {"running": "running", "kept": "completed", "reverted": "aborted",
               "stopped": "paused"}


def policy_href(policy_id: int) -> str:
    return f"/policies/{int(policy_id)}"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.3g}"


def _state(view: View) -> str:
    p = view.policy
    return (f'<span class="rollout-state {STATE_CLASS.get(p.state, "")}"'
            f' data-state="{escape(p.state)}">{escape(p.state)}</span>')


def _condition(spec: dict[str, Any]) -> str:
    clauses = [f"{c['kpi']} {c['op']} {c['value']:g}" for c in spec.get("condition", [])]
    return " and ".join(clauses) or "every device"


def lift_bars(view: View) -> str:
    """One row per evaluation: the lift's interval as a bar, the lift as a tick, on one
    axis that always holds zero (the line the decision is about)."""
    evals = [e.evidence for e in view.evaluations]
    goal = view.policy.spec["outcome"]["goal"]
    xs = [0.0] + [float(v) for e in evals for v in (e["ci_low"], e["ci_high"], e["lift"])
                  if v is not None]
    low, high = min(xs), max(xs)
    pad = (high - low) * 0.08 or 1.0
    low, high = low - pad, high + pad
    plot = WIDTH - LEFT - RIGHT

    def x(v: float) -> float:
        return LEFT + plot * (v - low) / (high - low)

    height = TOP + ROW * max(1, len(evals)) + 34
    kpi = escape(view.policy.spec["outcome"]["kpi"])
    title = f"lift of {kpi} with its 95% interval (goal: {escape(goal)})"
    out = [f'<svg class="chart lift" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}"'
           f' height="{height}" role="img" data-name="lift" data-rows="{len(evals)}"'
           f' data-zero="{x(0.0):.2f}" font-family="system-ui, sans-serif" font-size="11">',
           f"<title>{title}: treatment minus control, per device change over the window"
           "</title>",
           f'<text class="chart-title" x="{LEFT}" y="16" font-size="13" font-weight="600"'
           f' fill="#1d2329">{title}</text>',
           f'<rect class="plot-area" x="{LEFT}" y="{TOP - 4}" width="{plot}"'
           f' height="{ROW * max(1, len(evals)) + 4}" fill="#fafbfc" stroke="#c9d1d9"/>']
    for i, e in enumerate(evals):
        y = TOP + i * ROW
        label = f"window {i + 1} ({e['treatment_n']} vs {e['control_n']})"
        out.append(f'<g class="evaluation" data-n="{i + 1}" data-decision="{escape(e["decision"])}"'
                   f' data-lift="{e["lift"]}" data-low="{e["ci_low"]}" data-high="{e["ci_high"]}">')
        out.append(f'<text x="{LEFT - 8}" y="{y + 15}" text-anchor="end" fill="#5b6670">'
                   f"{escape(label)}</text>")
        colour = COLOURS.get(e["decision"], "#8c959f")
        if e["ci_low"] is not None and e["ci_high"] is not None:
            x0, x1 = x(e["ci_low"]), x(e["ci_high"])
            out.append(f'<rect class="interval" x="{x0:.2f}" y="{y + 5}"'
                       f' width="{max(1.0, x1 - x0):.2f}" height="{ROW - 14}" fill="{colour}"'
                       f' fill-opacity="0.35" stroke="{colour}"><title>95% interval'
                       f" [{_num(e['ci_low'])}, {_num(e['ci_high'])}]</title></rect>")
        if e["lift"] is not None:
            xl = x(e["lift"])
            out.append(f'<line class="estimate" x1="{xl:.2f}" x2="{xl:.2f}" y1="{y + 2}"'
                       f' y2="{y + ROW - 6}" stroke="{colour}" stroke-width="3"><title>lift'
                       f" {_num(e['lift'])}: {escape(e['decision'])}</title></line>")
        out.append(f'<text x="{WIDTH - RIGHT + 6}" y="{y + 15}" fill="{colour}"'
                   f' font-weight="600">{escape(e["decision"])}</text></g>')
    if not evals:
        out.append(f'<text x="{LEFT + 8}" y="{TOP + 15}" fill="#5b6670">not judged yet: the'
                   " window has not ended on record time</text>")
    zx = x(0.0)
    bottom = TOP + ROW * max(1, len(evals))
    out.append(f'<line class="zero" x1="{zx:.2f}" x2="{zx:.2f}" y1="{TOP - 4}" y2="{bottom}"'
               ' stroke="#1d2329" stroke-dasharray="3 2"/>')
    for v in (low + pad, 0.0, high - pad):
        out.append(f'<text x="{x(v):.2f}" y="{bottom + 14}" text-anchor="middle"'
                   f' fill="#5b6670">{escape(_num(v) if v else "0")}</text>')
    out.append("</svg>")
    return "".join(out)


def policies_page(views: Sequence[View], viewer: Viewer | None = None) -> str:
    rows = []
    for v in views:
        p = v.policy
        last = v.evaluations[-1].evidence if v.evaluations else None
        lift = "not judged yet" if last is None else (
            f"{_num(last['lift'])} [{_num(last['ci_low'])}, {_num(last['ci_high'])}]")
        rows.append([link(policy_href(p.id), f"{p.id}: {p.name}"), escape(p.product),
                     escape(json.dumps(p.spec["change"], sort_keys=True)), _state(v),
                     f'<span class="num">{len(v.treatment)}</span> /'
                     f' <span class="num">{len(v.control)}</span>',
                     escape(lift), escape(format_time(p.window_end_ms))])
    body = ('<h1 id="policies">Policies</h1>'
            '<p class="meta">Each policy runs as an experiment: a random treatment arm gets the'
            " change, a held-out control does not, and the cloud keeps or reverts it on the"
            " evidence when its window ends on record time.</p>"
            + table("policy-list", ("Policy", "Product", "Change", "State",
                                     "Treatment / control", "Last lift (95% CI)",
                                     "Window ends (UTC, record time)"), rows,
                    "No policies yet (fleetloop policy create)."))
    return layout("fleetloop: policies", body, [link("/policies", "Policies")], viewer=viewer)


def _devices(ids: Sequence[str]) -> str:
    return ", ".join(link(device_href(d), d) for d in ids) or "none"


def policy_page(view: View, trail: Sequence[AuditRow], viewer: Viewer | None = None) -> str:
    p = view.policy
    spec = p.spec
    why = f" <small>{escape(p.reason)}</small>" if p.reason else ""
    heading = (
        f'<h1 id="policy" data-policy="{p.id}" data-state="{escape(p.state)}">'
        f"{escape(p.name)} <small>{escape(p.product)} &middot; {_state(view)}</small>{why}</h1>"
        f'<p class="meta" id="settings">change {escape(json.dumps(spec["change"], sort_keys=True))}'
        f" &middot; condition {escape(_condition(spec))}"
        f" &middot; outcome {escape(spec['outcome']['kpi'])} (goal"
        f" {escape(spec['outcome']['goal'])}) &middot; treatment share"
        f" {spec['treatment_share']:.0%} &middot; window {spec['window_days']} days"
        f" ({format_time(p.window_start_ms)} to {format_time(p.window_end_ms)} UTC, record"
        f" time) &middot; extensions {p.extensions} of {spec['max_extensions']} &middot;"
        f" seed {p.seed} &middot; created {escape(format_time(p.created_ms))} UTC by"
        f" {escape(p.created_by)}</p>")
    eval_rows = [[str(e.n), escape(format_time(e.evidence["window_start_ms"])) + " to "
                  + escape(format_time(e.evidence["window_end_ms"])),
                  f'{e.evidence["treatment_n"]}: {_num(e.evidence["treatment_mean"])}',
                  f'{e.evidence["control_n"]}: {_num(e.evidence["control_mean"])}',
                  _num(e.evidence["lift"]),
                  f'[{_num(e.evidence["ci_low"])}, {_num(e.evidence["ci_high"])}]',
                  f'<span class="decision">{escape(e.evidence["decision"])}</span>',
                  escape(format_time(e.at_ms))]
                 for e in view.evaluations]
    audit_rows = [[escape(format_time(a.at_ms)), escape(a.actor), escape(a.action),
                   escape(a.outcome), escape(a.reason)] for a in trail]
    body = (
        heading
        + f'<div class="charts"><figure class="policy" data-name="lift">{lift_bars(view)}'
        "</figure></div>"
        + "<h2>Evaluations</h2>"
        + table("evaluations", ("#", "Window (UTC, record time)", "Treatment: n, mean change",
                                 "Control: n, mean change", "Lift", "95% CI", "Decision",
                                 "Decided (UTC)"), eval_rows, "Not judged yet.")
        + "<h2>Arms</h2>"
        + f'<p id="treatment"><b>Treatment ({len(view.treatment)})</b>: '
        f"{_devices(view.treatment)}</p>"
        + f'<p id="control"><b>Control ({len(view.control)})</b>: {_devices(view.control)}</p>'
        + "<h2>Left out</h2>"
        + table("excluded", ("Device", "Why"),
                [[link(device_href(e.device), e.device), escape(e.reason)]
                 for e in view.excluded], "No device was left out.")
        + "<h2>Audit trail</h2>"
        + table("policy-audit", ("When (UTC)", "Who", "Action", "Outcome", "Reason"),
                audit_rows, "No entries.")
    )
    return layout(f"fleetloop: policy {p.name}", body,
                  [link("/policies", "Policies"), link(policy_href(p.id), p.name)],
                  viewer=viewer)
