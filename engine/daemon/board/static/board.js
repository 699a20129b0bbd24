// riskc status board: renders /api/status, then every server-sent update of it. Read-only.
// Everything is built with textContent (reasons quote policy text): no HTML from the data.
"use strict";

const token = new URLSearchParams(location.search).get("token");
const withToken = (path) => (token ? `${path}?token=${encodeURIComponent(token)}` : path);
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function money(text) {
  if (text === null || text === undefined) return "—";
  const value = Number(text);
  const sign = value < 0 ? "-" : "";
  return `${sign}$${Math.abs(value).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
}

function signClass(text) {
  const value = Number(text);
  return value > 0 ? "pos" : value < 0 ? "neg" : "";
}

function duration(seconds) {
  seconds = Math.max(0, Math.floor(seconds));
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  if (h) return `${h}h${String(m).padStart(2, "0")}m`;
  if (m) return `${m}m${String(s).padStart(2, "0")}s`;
  return `${s}s`;
}

function clockText(iso, zone) {
  try {
    return new Date(iso).toLocaleTimeString("en-GB", { timeZone: zone, hour12: false });
  } catch (e) {
    return iso.slice(11, 19);
  }
}

function figure(label, value, cls) {
  return el("div", { class: "figure" }, el("div", { class: "label" }, label), el("div", { class: `value ${cls || ""}` }, value));
}

function positionsTable(account) {
  if (!account.positions.length) return el("p", { class: "empty" }, "flat");
  const rows = account.positions.map((p) => {
    const covered = p.stop_coverage >= p.qty;
    let grace = "";
    if (!covered) {
      grace = p.grace_remaining === null ? `uncovered ${duration(p.uncovered_for)}` : `grace ${duration(p.grace_remaining)} left`;
    }
    return el("tr", { class: "position", "data-symbol": p.symbol },
      el("td", {}, p.symbol), el("td", {}, `${p.size > 0 ? "+" : ""}${p.size}`), el("td", {}, p.avg_price), el("td", {}, p.mark),
      el("td", { class: signClass(p.unrealized_pnl) }, money(p.unrealized_pnl)),
      el("td", { class: covered ? "covered" : "uncovered" }, `${p.stop_coverage}/${p.qty}`),
      el("td", { class: covered ? "" : "uncovered grace" }, grace));
  });
  return el("div", { class: "scroll" }, el("table", {},
    el("thead", {}, el("tr", {}, ["symbol", "size", "avg", "mark", "unrealized", "stops", "grace"].map((h) => el("th", {}, h)))),
    el("tbody", {}, rows)));
}

function lockoutsList(account) {
  if (!account.lockouts.length) return el("p", { class: "empty" }, "none");
  return el("ul", { class: "list" }, account.lockouts.map((lo) => {
    const countdown = lo.remaining_seconds === null ? lo.ends : `${duration(lo.remaining_seconds)} left`;
    return el("li", { class: "lockout", "data-rule": lo.rule },
      el("span", { class: "countdown" }, countdown), " ",
      el("span", {}, `${lo.symbol ? lo.symbol : "whole account"} · ${lo.rule} · ${lo.ends}`),
      el("span", { class: "reason" }, lo.reason));
  }));
}

function actionsList(account) {
  if (!account.actions.length) return el("p", { class: "empty" }, "no action yet");
  return el("ul", { class: "list" }, account.actions.slice(0, 10).map((a) => {
    const target = a.action === "trading_state" ? `→ ${a.state}` : a.symbol || a.contract_id || "";
    return el("li", { class: "action", "data-action": a.action, "data-rule": a.rule },
      el("span", { class: "muted" }, a.ts ? clockText(a.ts, account.timezone) : ""), " ",
      el("span", { class: "what" }, `${a.action}${target ? " " + target : ""}`), " ",
      el("span", { class: "muted" }, a.rule),
      el("span", { class: "reason" }, a.reason || ""));
  }));
}

function chart(account) {
  // Drawn at the card's own width, so that its labels are 12 px on a phone as on a desktop.
  const room = document.getElementById("accounts").clientWidth - 48;
  const c = account.chart, W = Math.max(280, Math.min(room, 860)), H = 170, L = 8, R = 8, T = 10, B = 18;
  const points = c.points.map(([t, v]) => [t, Number(v)]);
  const box = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": "net P&L over the trading day" });
  const values = points.map((p) => p[1]).concat([0]);
  if (c.daily_loss !== null) values.push(Number(c.daily_loss));
  if (c.drawdown_floor !== null && Number(c.drawdown_floor) > -10 * Math.max(1, ...values.map(Math.abs))) values.push(Number(c.drawdown_floor));
  let lo = Math.min(...values), hi = Math.max(...values);
  const pad = (hi - lo || 100) * 0.08;
  lo -= pad; hi += pad;
  const t0 = points.length ? points[0][0] : 0, t1 = points.length ? Math.max(points[points.length - 1][0], t0 + 60) : 60;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + ((hi - v) / (hi - lo)) * (H - T - B);
  const hline = (v, cls, label) => {
    box.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: cls }));
    if (label) box.append(svg("text", { x: W - R - 4, y: y(v) - 4, "text-anchor": "end", class: `${cls}-label` }, label));
  };
  hline(0, "grid", "$0");
  if (c.daily_loss !== null) hline(Number(c.daily_loss), "limit", `daily loss ${money(c.daily_loss)}`);
  if (c.drawdown_floor !== null && Number(c.drawdown_floor) >= lo) hline(Number(c.drawdown_floor), "floor", `drawdown floor ${money(c.drawdown_floor)}`);
  if (points.length) {
    box.append(svg("polyline", { class: "pnl", points: points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ") }));
    box.append(svg("text", { x: L, y: H - 4 }, clockText(new Date(t0 * 1000).toISOString(), account.timezone)));
    box.append(svg("text", { x: W - R, y: H - 4, "text-anchor": "end" }, clockText(new Date(points[points.length - 1][0] * 1000).toISOString(), account.timezone)));
  } else {
    box.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no P&L samples yet"));
  }
  return box;
}

function meta(account) {
  const h = account.health, p = account.policy;
  const hubs = h.hubs ? Object.entries(h.hubs).map(([k, up]) => `${k} ${up ? "up" : "DOWN"}`).join(", ") : h.broker;
  const lines = [
    el("div", {}, `policy ${p.hash.slice(0, 16)}… (${p.files.length} file${p.files.length === 1 ? "" : "s"})`),
  ];
  if (p.pending) {
    lines.push(el("div", { class: "pending" },
      p.pending.problems && p.pending.problems.length
        ? `pending edit ${p.pending.hash ? p.pending.hash.slice(0, 16) + "…" : ""} is BROKEN: ${p.pending.problems[0]}`
        : `pending ${p.pending.hash.slice(0, 16)}… active from ${p.pending.activates_local || p.pending.activates_at}`));
  }
  lines.push(el("div", {}, `broker: ${hubs}${h.stale ? " · STALE, rules paused until reconciled" : ""}` +
    `${h.last_reconcile ? " · reconciled " + clockText(h.last_reconcile, account.timezone) : ""}` +
    ` · ${h.calls_last_minute}/${h.requests_per_minute} calls this minute`));
  lines.push(el("div", {}, `${h.messages.toLocaleString()} messages · ${h.calls} broker calls · ${h.malformed} malformed · ${h.reloads} reloads`));
  if (p.last_error) lines.push(el("div", { class: "error" }, p.last_error));
  return el("div", { class: "meta muted" }, lines);
}

function accountCard(account) {
  if (account.waiting) {
    return el("section", { class: "account", "data-account": account.id }, el("h2", {}, "waiting for the first message…"));
  }
  const ts = account.trading_state, day = account.day;
  return el("section", { class: "account", "data-account": account.id },
    el("h2", {}, el("span", { class: "name" }, account.name), el("span", { class: `state ${ts.state}` }, ts.state),
      el("span", { class: "muted state-reason" }, ts.reason || "")),
    el("div", { class: "muted" }, `${account.time_local} · trading day ${account.trading_day}`),
    el("div", { class: "figures" },
      figure("balance", money(account.balance)),
      figure("day P&L", money(day.net_pnl), signClass(day.net_pnl)),
      figure("realized", money(day.realized_pnl), signClass(day.realized_pnl)),
      figure("unrealized", money(day.unrealized_pnl), signClass(day.unrealized_pnl)),
      figure("fills", String(day.trades))),
    chart(account),
    el("h3", {}, "positions"), positionsTable(account),
    el("h3", {}, "lockouts"), lockoutsList(account),
    el("h3", {}, "last actions"), actionsList(account),
    meta(account));
}

function groupCard(group) {
  const members = el("ul", { class: "list members" }, ...group.accounts.map((a) =>
    el("li", {}, el("span", { class: "name" }, a.name), " ",
      el("span", { class: `state ${a.trading_state}` }, a.trading_state), " ",
      el("span", { class: signClass(a.net_pnl) }, money(a.net_pnl)))));
  const pending = group.policy.pending;
  return el("section", { class: "account group", "data-group": group.name },
    el("h2", {}, el("span", { class: "name" }, `group ${group.name}`),
      el("span", { class: "muted" }, `${group.accounts.length} accounts`)),
    el("div", { class: "figures" },
      figure("group P&L", money(group.net_pnl), signClass(group.net_pnl)),
      figure("realized", money(group.realized_pnl), signClass(group.realized_pnl)),
      figure("unrealized", money(group.unrealized_pnl), signClass(group.unrealized_pnl)),
      figure("open contracts", String(group.open_contracts)),
      figure("fills", String(group.trades))),
    members,
    el("div", { class: "meta muted" }, `group policy ${group.policy.hash.slice(0, 16)}…` +
      (pending ? ` · pending ${pending.hash.slice(0, 16)}… active from ${pending.activates_local || pending.activates_at}` : "")));
}

function render(status) {
  document.getElementById("broker").textContent = `${status.demo ? "demo · " : ""}${status.broker}` +
    (status.edits === "next_trading_day" ? " · edits take effect next trading day" : "");
  const main = document.getElementById("accounts");
  const cards = [...(status.groups || []).map(groupCard), ...status.accounts.map(accountCard)];
  main.replaceChildren(...(status.accounts.length ? cards : [el("p", { class: "muted" }, "no account yet")]));
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}

function link(state, text) {
  const node = document.getElementById("link");
  node.className = `link ${state}`;
  node.textContent = text;
}

function connect() {
  const source = new EventSource(withToken("api/events"));
  source.onopen = () => link("live", "● live");
  source.onmessage = (event) => {
    link("live", "● live");
    render(JSON.parse(event.data));
  };
  source.onerror = () => link("down", "○ reconnecting… (is riskc still running?)");
}

fetch(withToken("api/status")).then((r) => r.json()).then(render).catch(() => link("down", "○ no answer from riskc"));
connect();
