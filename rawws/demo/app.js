// rawws chat demo: the browser's own WebSocket API, no framework.
// Messages are {type, payload, timestamp} JSON, as in the pub/sub server's protocol.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  ws: null,
  attempt: 0,             // reconnect attempts since the last successful open
  retryTimer: null,
  room: "lobby",
  user: localStorage.getItem("rawws-user") || "guest-" + Math.random().toString(36).slice(2, 6),
  me: null,               // this connection's id, as the server stamps it on what we send
  nameRetries: 0,         // "name taken" answers retried since the last successful join
  typers: new Map(),      // sender id -> {name, timer that clears the indicator}
  lastTypingSent: 0,
  stopTypingTimer: null,
  pingTimer: null,
};
const MAX_DELAY = 30000;

function channel() { return "room:" + state.room; }

function sendMessage(type, payload) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify({ type, payload, timestamp: Date.now() }));
    return true;
  }
  return false;
}

function setStatus(kind, text) {
  $("status").dataset.state = kind;
  $("status-text").textContent = text;
  $("send").disabled = kind !== "online";
}

function addLine(text, options = {}) {
  const item = document.createElement("li");
  if (options.system) item.className = "system";
  if (options.mine) item.className = "mine";
  if (options.who) {
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = options.who;
    item.appendChild(who);
  }
  item.appendChild(document.createTextNode(text));
  $("messages").appendChild(item);
  $("messages").scrollTop = $("messages").scrollHeight;
}

// Who sent it, from the sender the server stamped (never from what a client claims).
function senderName(sender) { return sender ? sender.user || sender.id : "server"; }
function isMine(sender) { return Boolean(sender) && sender.id === state.me; }

function renderTyping() {
  const names = [...state.typers.values()].map((typer) => typer.name);
  $("typing").textContent = names.length === 0 ? ""
    : names.length === 1 ? `${names[0]} is typing…`
    : `${names.join(", ")} are typing…`;
}

function handleMessage(data) {
  let msg;
  try { msg = JSON.parse(data); } catch (e) { console.warn("not JSON", data); return; }
  const p = msg.payload || {};
  switch (msg.type) {
    case "chat": {
      if (p.channel !== channel() || !p.sender) return;
      const typer = state.typers.get(p.sender.id);
      if (typer) { clearTimeout(typer.timer); state.typers.delete(p.sender.id); renderTyping(); }
      addLine(p.text, { who: senderName(p.sender), mine: isMine(p.sender) });
      break;
    }
    case "typing": {
      if (p.channel !== channel() || !p.sender || isMine(p.sender)) return;
      const id = p.sender.id;
      clearTimeout(state.typers.get(id)?.timer);
      if (p.typing) {
        const timer = setTimeout(() => { state.typers.delete(id); renderTyping(); }, 3000);
        state.typers.set(id, { name: senderName(p.sender), timer });
      } else {
        state.typers.delete(id);
      }
      renderTyping();
      break;
    }
    case "subscribed":
      if (p.you) state.me = p.you.id;
      state.nameRetries = 0;
      if (p.channel === channel()) $("count").textContent = p.subscribers;
      break;
    case "presence":
      if (p.channel === channel()) $("count").textContent = p.count;
      break;
    case "notification":
      addLine(p.sender ? `${senderName(p.sender)}: ${p.message}` : String(p.message), { system: true });
      break;
    case "pong":
      if (p && p.sent) $("latency").textContent = `round trip ${Date.now() - p.sent} ms`;
      break;
    case "error":
      // Our own previous connection (a reload) may still hold the name for a moment: try again shortly.
      if (p.type === "subscribe" && p.channel === channel() && /taken/.test(p.error) && state.nameRetries < 3) {
        state.nameRetries += 1;
        setTimeout(() => sendMessage("subscribe", { channel: channel() }), 1000);
        return;
      }
      addLine("server: " + p.error, { system: true });
      break;
    default:
      console.log("unknown message type", msg.type);
  }
}

function connect() {
  clearTimeout(state.retryTimer);
  // The name is bound to this connection by the server: changing it means connecting again.
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws?name="
    + encodeURIComponent(state.user);
  setStatus("connecting", state.attempt ? `reconnecting (attempt ${state.attempt})…` : "connecting…");
  const ws = new WebSocket(url);
  state.ws = ws;
  ws.addEventListener("open", () => {
    const again = state.attempt > 0;
    state.attempt = 0;
    $("reconnect").hidden = true;
    setStatus("online", "connected");
    sendMessage("subscribe", { channel: channel() });
    if (again) addLine("reconnected", { system: true });
    clearInterval(state.pingTimer);
    state.pingTimer = setInterval(() => sendMessage("ping", { sent: Date.now() }), 15000);
    sendMessage("ping", { sent: Date.now() });
    if ($("wire").open) sendMessage("wire", { on: true });
  });
  ws.binaryType = "arraybuffer";  // binary messages are the wire view's reports
  ws.addEventListener("message", (event) => {
    if (typeof event.data === "string") handleMessage(event.data);
    else showWireReport(event.data);
  });
  ws.addEventListener("error", () => console.warn("WebSocket error"));
  ws.addEventListener("close", (event) => {
    if (state.ws !== ws) return;
    clearInterval(state.pingTimer);
    setStatus("offline", `disconnected (code ${event.code})`);
    scheduleReconnect(event.code);
  });
}

// Exponential backoff: 1 s, 2 s, 4 s, … capped at 30 s.
function scheduleReconnect(code) {
  const delay = Math.min(1000 * 2 ** state.attempt, MAX_DELAY);
  state.attempt += 1;
  const notice = $("reconnect");
  notice.hidden = false;
  notice.textContent = `Connection lost (code ${code}). Reconnecting in ${delay / 1000} s…`;
  state.retryTimer = setTimeout(connect, delay);
}

function joinRoom(name) {
  const room = name.trim() || "lobby";
  if (room === state.room) return;
  sendMessage("unsubscribe", { channel: channel() });
  state.room = room;
  state.typers.clear(); renderTyping();
  $("messages").textContent = "";
  $("room-name").textContent = room;
  $("count").textContent = "0";
  sendMessage("subscribe", { channel: channel() });
  addLine(`you joined ${room}`, { system: true });
}

function sendTyping(typing) {
  sendMessage("typing", { channel: channel(), typing });
}

function reconnectNow() {
  const old = state.ws;
  state.ws = null;          // its close event is not a lost connection
  if (old) old.close(1000, "changing name");
  state.attempt = 0;
  connect();
}

$("name").value = state.user;
$("name").addEventListener("change", () => {
  const name = $("name").value.trim() || state.user;
  $("name").value = name;
  if (name === state.user) return;
  state.user = name;
  localStorage.setItem("rawws-user", state.user);
  reconnectNow();
});
$("room-form").addEventListener("submit", (event) => { event.preventDefault(); joinRoom($("room").value); });
$("text").addEventListener("input", () => {
  const now = Date.now();
  if (now - state.lastTypingSent > 1000) { state.lastTypingSent = now; sendTyping(true); }
  clearTimeout(state.stopTypingTimer);
  state.stopTypingTimer = setTimeout(() => { state.lastTypingSent = 0; sendTyping(false); }, 2000);
});
$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  if (sendMessage("chat", { channel: channel(), text })) {
    $("text").value = "";
    clearTimeout(state.stopTypingTimer);
    state.lastTypingSent = 0;
  }
});

// Wire view: while the panel is open, the server reports this connection's frames to it.
const MAX_WIRE_ENTRIES = 200;

function showWireReport(buffer) {
  let report;
  try { report = JSON.parse(new TextDecoder().decode(buffer)); } catch (e) { return; }
  if (report.type !== "wire" || !$("wire").open) return;
  const list = $("wire-frames");
  for (const frame of report.payload.frames) list.appendChild(wireEntry(frame));
  while (list.children.length > MAX_WIRE_ENTRIES) list.removeChild(list.firstChild);
  list.scrollTop = list.scrollHeight;
}

function wireEntry(frame) {
  const item = document.createElement("li");
  item.className = frame.dir && frame.dir.startsWith("browser") ? "sent" : "received";
  if (frame.error) {
    item.classList.add("error");
    item.textContent = (frame.dir ? frame.dir + ": " : "") + frame.error;
    return item;
  }
  item.dataset.masked = frame.masked ? "1" : "0";
  item.dataset.opcode = frame.opcode;
  const details = document.createElement("details");
  const summary = document.createElement("summary");
  const dir = document.createElement("span");
  dir.className = "dir";
  dir.textContent = frame.dir;
  summary.append(dir, " ", frame.line);
  const table = document.createElement("table");
  for (const [name, value, section] of frame.fields) {
    const row = table.insertRow();
    row.insertCell().textContent = name;
    row.insertCell().textContent = value;
    row.insertCell().textContent = section;
    row.dataset.field = name;
  }
  details.append(summary, table);
  item.appendChild(details);
  return item;
}

$("wire").addEventListener("toggle", () => {
  if (!$("wire").open) $("wire-frames").textContent = "";
  sendMessage("wire", { on: $("wire").open });
});

connect();
