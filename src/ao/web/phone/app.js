"use strict";
// The fleet on any screen (ao's web/phone.py). Text from outside (titles, screens, events)
// goes into the page as textContent only, never as markup.
const LANES = [["respond", "needs you"], ["gate", "at a gate"], ["merge", "ready to merge"],
  ["fixing", "fixing"], ["working", "working"], ["queued", "queued"], ["done", "done"]];
const NOTIFY = ["escalated", "attention.", "budget.reached", "agent.limit_parked", "main.red"];
let sessions = [];
let open = null;
let timer = null;
let reload = null;

const $ = (sel) => document.querySelector(sel);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

async function api(path, body) {
  const init = body === undefined ? {credentials: "same-origin"} : {
    method: "POST", credentials: "same-origin",
    headers: {"content-type": "application/json"}, body: JSON.stringify(body)};
  const r = await fetch(path, init);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((data.error || r.status) + (data.hint ? " (" + data.hint + ")" : ""));
  return data;
}

function age(t) {
  const s = Math.max(0, Date.now() / 1000 - t);
  return s < 3600 ? Math.round(s / 60) + "m" : s < 86400 ? Math.round(s / 3600) + "h"
    : Math.round(s / 86400) + "d";
}

function facts(s) {
  const out = [];
  if (s.waiting) out.push(s.waiting);
  if (s.pr) out.push("PR #" + s.pr + (s.checks ? " " + s.checks : ""));
  if (s.review && s.review !== "not_reviewed") out.push(s.review.replace(/_/g, " "));
  if (s.fix_rounds) out.push("round " + s.fix_rounds);
  out.push(s.zone === "done" ? (s.outcome || s.state) : s.activity);
  out.push(age(s.created_at));
  return out.join(" · ");
}

function render() {
  const root = $("#lanes");
  const counts = $("#counts");
  root.replaceChildren();
  counts.replaceChildren();
  for (const [zone, name] of LANES) {
    const mine = sessions.filter((s) => s.zone === zone);
    counts.append(el("span", "count " + zone, name + " " + mine.length));
    if (!mine.length) continue;
    const lane = el("section", "lane " + zone);
    lane.append(el("h2", null, name + " · " + mine.length));
    for (const s of mine) {
      const card = el("button", "card");
      card.type = "button";
      card.dataset.id = s.id;
      const head = el("div", "head");
      head.append(el("b", null, s.id), el("span", "task", s.task), el("span", "title", s.title));
      card.append(head, el("div", "facts", facts(s)));
      card.addEventListener("click", () => show(s.id));
      lane.append(card);
    }
    root.append(lane);
  }
  if (open) {
    const s = sessions.find((x) => x.id === open);
    if (s) {
      $("#facts").textContent = s.task + " · " + s.title + " · " + facts(s);
      // what can be done to it: nothing to merge, restore or kill once it ended
      const ended = s.zone === "done";
      for (const b of document.querySelectorAll("[data-act]")) b.hidden = ended;
      $("#send").hidden = ended;
    }
  }
}

async function load() {
  try {
    sessions = await api("/api/sessions");
    render();
    $("#status").textContent = "";
  } catch (e) {
    $("#status").textContent = String(e.message);
  }
}

async function screen() {
  if (!open) return;
  try {
    const d = await api("/api/sessions/" + encodeURIComponent(open) + "/screen");
    $("#screen").textContent = d.screen === null ? d.why : (d.screen || "(an empty screen)");
  } catch (e) {
    $("#screen").textContent = String(e.message);
  }
}

function live() {
  clearInterval(timer);
  timer = setInterval(screen, 2000);
  return screen();
}

async function show(id) {
  open = id;
  $("#which").textContent = id;
  $("#sent").textContent = "";
  $("#lanes").hidden = true;
  $("#detail").hidden = false;
  render();
  await live();
}

function back() {
  open = null;
  clearInterval(timer);
  $("#detail").hidden = true;
  $("#lanes").hidden = false;
}

async function diff() {
  clearInterval(timer);
  try {
    const d = await api("/api/sessions/" + encodeURIComponent(open) + "/diff");
    $("#screen").textContent = (d.stat || "no changes") + "\n" + (d.diff || "");
  } catch (e) {
    $("#screen").textContent = String(e.message);
  }
}

async function act(action) {
  if (action === "kill" && !window.confirm("End " + open + "? Unpushed work is kept.")) return;
  try {
    const r = await api("/api/sessions/" + encodeURIComponent(open) + "/" + action, {});
    $("#sent").textContent = action + ": " + JSON.stringify(r);
  } catch (e) {
    $("#sent").textContent = action + ": " + e.message;
  }
  load();
}

async function send(ev) {
  ev.preventDefault();
  const text = $("#message").value;
  if (!text.trim()) return;
  try {
    const r = await api("/api/sessions/" + encodeURIComponent(open) + "/send", {message: text});
    // "delivered" is all a person needs; why it waits or failed is worth the words
    $("#sent").textContent = r.status + (r.detail && r.status !== "delivered" ? ": " + r.detail
      : "");
    if (r.status !== "failed") $("#message").value = "";
  } catch (e) {
    $("#sent").textContent = "failed: " + e.message;
  }
  screen();
}

function notify(e) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  if (!NOTIFY.some((t) => e.type.startsWith(t))) return;
  const why = (e.data && (e.data.reason || e.data.why)) || e.type;
  new Notification("ao: " + (e.session || e.project || "fleet"), {body: String(why), tag: String(e.id)});
}

function listen() {
  const es = new EventSource("/api/events?plain=1");
  es.onmessage = (m) => {
    let e = null;
    try { e = JSON.parse(m.data); } catch (_) { return; }
    notify(e);
    clearTimeout(reload);
    reload = setTimeout(load, 300);
  };
}

function setup() {
  $("#back").addEventListener("click", back);
  $("#show-screen").addEventListener("click", live);
  $("#show-diff").addEventListener("click", diff);
  $("#send").addEventListener("submit", send);
  for (const b of document.querySelectorAll("[data-act]")) {
    b.addEventListener("click", () => act(b.dataset.act));
  }
  const n = $("#notify");
  if (!("Notification" in window)) n.hidden = true;
  else {
    if (Notification.permission === "granted") n.textContent = "notifying";
    n.addEventListener("click", async () => {
      const p = await Notification.requestPermission();
      n.textContent = p === "granted" ? "notifying" : "notifications off";
    });
  }
  load();
  listen();
}

setup();
