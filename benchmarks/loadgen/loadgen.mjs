// Benchmark-only load generator for rawws (Node.js + the `ws` package).
// Usage: node loadgen.mjs SCENARIO '{"json": "arguments"}'
// Prints one JSON line with the results on stdout. Every echo is checked byte
// for byte; any mismatch or loss is reported in "errors" and the run must not count.
import WebSocket from 'ws';
import net from 'node:net';
import crypto from 'node:crypto';

const [, , scenario, rawArgs] = process.argv;
const args = JSON.parse(rawArgs || '{}');
const now = () => Number(process.hrtime.bigint()) / 1e9;
const sleep = (s) => new Promise((r) => setTimeout(r, s * 1000));

// handshakeTimeout: a server that stops accepting fails the run instead of hanging it.
function wsOptions() {
  return { perMessageDeflate: !!args.deflate, maxPayload: 64 * 1024 * 1024, handshakeTimeout: (args.open_timeout || 30) * 1000 };
}

// One connection with a FIFO of expected echoes; `onEcho(ok)` per message.
class Client {
  constructor(kind, port, path = '/') {
    this.kind = kind;
    this.port = port;
    this.path = path;
    this.waiters = [];
    this.errors = 0;
  }
  open() {
    return new Promise((resolve, reject) => {
      if (this.kind === 'tcp') {
        this.sock = net.connect({ port: this.port, host: '127.0.0.1', noDelay: true }, () => resolve(this));
        this.sock.setNoDelay(true);
        this.buf = Buffer.alloc(0);
        this.sock.on('data', (d) => this._tcpData(d));
        this.sock.on('error', reject);
      } else {
        this.ws = new WebSocket(`ws://127.0.0.1:${this.port}${this.path}`, wsOptions());
        this.ws.binaryType = 'nodebuffer';
        this.ws.on('open', () => resolve(this));
        this.ws.on('error', reject);
        this.ws.on('message', (data) => this._deliver(data));
      }
    });
  }
  _tcpData(d) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    while (this.buf.length >= 4) {
      const n = this.buf.readUInt32BE(0);
      if (this.buf.length < 4 + n) break;
      const body = this.buf.subarray(4, 4 + n);
      this.buf = this.buf.subarray(4 + n);
      this._deliver(body);
    }
  }
  _deliver(data) {
    const waiter = this.waiters.shift();
    if (!waiter) { this.errors++; return; }
    waiter(data);
  }
  // Send `payload`; `callback(ok)` runs when its echo arrives (ok: byte-for-byte equal).
  sendCb(payload, callback) {
    this.waiters.push((data) => {
      const ok = payload.equals(data);
      if (!ok) this.errors++;
      callback(ok);
    });
    if (this.kind === 'tcp') {
      const header = Buffer.allocUnsafe(4);
      header.writeUInt32BE(payload.length);
      this.sock.write(Buffer.concat([header, payload]));
    } else {
      this.ws.send(payload, { binary: !args.text });
    }
  }
  send(payload) {
    return new Promise((resolve) => this.sendCb(payload, resolve));
  }
  close() {
    return new Promise((resolve) => {
      if (this.kind === 'tcp') { this.sock.end(); this.sock.on('close', resolve); }
      else if (this.ws.readyState === WebSocket.CLOSED) resolve();
      else { this.ws.on('close', () => resolve()); this.ws.close(1000); }
    });
  }
}

// Payloads are random bytes with a sequence number in front, made once and
// reused from a pool so that the load generator spends its time on the wire.
const pools = new Map();
const WORDS = ['hello', 'there', 'the', 'deploy', 'is', 'done', 'see', 'you', 'at', 'lunch', 'ok', 'thanks', 'ship', 'it',
  'who', 'broke', 'build', 'again', 'coffee', 'meeting', 'moved', 'to', 'three', 'pm', 'great', 'news', 'everyone'];
// JSON chat messages of about `size` bytes (args.text), like a real chat stream: repetitive keys, varied text.
function jsonPayload(size, i) {
  const items = [];
  let length = 2;
  let n = 0;
  while (length < size) {
    const text = Array.from({ length: 6 + ((i + n) % 9) }, (_, k) => WORDS[(i * 7 + n * 3 + k * 5) % WORDS.length]).join(' ');
    const item = JSON.stringify({ type: 'chat', payload: { channel: `room-${(i + n) % 12}`, user: `user${(i * 13 + n) % 97}`, text }, timestamp: 1764200000000 + i * 1000 + n });
    items.push(item);
    length += item.length + 1;
    n++;
  }
  return Buffer.from(`[${items.join(',')}]`.slice(0, Math.max(size, 2)));
}
function payloadFor(size, seq) {
  let pool = pools.get(size);
  if (!pool) {
    pool = Array.from({ length: 257 }, (_, i) => {
      if (args.text) return jsonPayload(size, i);
      const b = crypto.randomBytes(size);
      if (size >= 8) b.writeBigUInt64BE(BigInt(i), 0);
      return b;
    });
    pools.set(size, pool);
  }
  return pool[seq % pool.length];
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

function cpuSeconds() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

async function roundTrips() {
  const c = await new Client(args.kind, args.port).open();
  const pool = Array.from({ length: 64 }, (_, i) => payloadFor(args.size, i));  // eslint-disable-line
  const lat = [];
  let errors = 0;
  const warmEnd = now() + args.warmup;
  let i = 0;
  while (now() < warmEnd) { if (!(await c.send(pool[i++ % 64]))) errors++; }
  const cpu0 = cpuSeconds();
  const start = now();
  const end = start + args.duration;
  let count = 0;
  while (now() < end && count < args.max_count) {
    const t0 = now();
    if (!(await c.send(pool[i++ % 64]))) errors++;
    lat.push(now() - t0);
    count++;
  }
  const elapsed = now() - start;
  const cpu = cpuSeconds() - cpu0;
  await c.close();
  lat.sort((a, b) => a - b);
  return {
    rate: count / elapsed, count, errors: errors + c.errors,
    p50_us: percentile(lat, 0.5) * 1e6, p99_us: percentile(lat, 0.99) * 1e6,
    mbps: (count * args.size) / elapsed / 1e6, loadgen_cpu: cpu / elapsed,
  };
}

async function inFlight() {
  const clients = await Promise.all(Array.from({ length: args.conns }, () => new Client(args.kind, args.port).open()));
  let counting = false;
  let stop = false;
  let received = 0;
  let errors = 0;
  let outstanding = 0;
  let seq = 0;
  let drained;
  const allDrained = new Promise((resolve) => { drained = resolve; });
  const next = (c) => {
    if (stop) { if (--outstanding === 0) drained(); return; }
    c.sendCb(payloadFor(args.size, seq++), (ok) => {
      if (!ok) errors++;
      if (counting) received++;
      next(c);
    });
  };
  for (const c of clients) {
    for (let k = 0; k < args.inflight; k++) { outstanding++; next(c); }
  }
  await sleep(args.warmup);
  counting = true;
  const cpu0 = cpuSeconds();
  const start = now();
  await sleep(args.duration);
  counting = false;
  const elapsed = now() - start;
  const cpu = cpuSeconds() - cpu0;
  const got = received;
  stop = true;
  await Promise.race([allDrained, sleep(10)]);
  await Promise.all(clients.map((c) => c.close()));
  return {
    rate: got / elapsed, count: got, errors: errors + clients.reduce((s, c) => s + c.errors, 0),
    mbps: (got * args.size) / elapsed / 1e6, loadgen_cpu: cpu / elapsed,
  };
}

async function handshakes() {
  let count = 0;
  let errors = 0;
  const end = now() + args.duration;
  const start = now();
  const cpu0 = cpuSeconds();
  const worker = async () => {
    while (now() < end) {
      try {
        const c = await new Client('ws', args.port).open();
        await c.close();
        count++;
      } catch (e) { errors++; }
    }
  };
  await Promise.all(Array.from({ length: args.concurrency }, worker));
  const elapsed = now() - start;
  return { rate: count / elapsed, count, errors, loadgen_cpu: (cpuSeconds() - cpu0) / elapsed };
}

async function openMany(n, path, batch) {
  const clients = [];
  for (let i = 0; i < n; i += batch) {
    const part = await Promise.all(Array.from({ length: Math.min(batch, n - i) }, () => new Client(args.kind, args.port, path).open()));
    clients.push(...part);
  }
  return clients;
}

async function fanOut() {
  // Subscribers: each waits for "ready", then every broadcast.
  const subs = [];
  for (let i = 0; i < args.subscribers; i += 100) {
    const part = await Promise.all(Array.from({ length: Math.min(100, args.subscribers - i) }, () => new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${args.port}/sub`, wsOptions());
      ws.binaryType = 'nodebuffer';
      const s = { ws, got: [] };
      ws.on('message', (data) => {
        if (!s.ready) { s.ready = true; resolve(s); } else { s.got.push(Buffer.from(data)); s.onMsg && s.onMsg(); }
      });
      ws.on('error', reject);
    })));
    subs.push(...part);
  }
  const pub = await new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${args.port}/pub`, wsOptions());
    ws.on('open', () => resolve(ws));
    ws.on('error', reject);
  });
  const times = [];
  const serverTimes = [];
  let errors = 0;
  const cpu0 = cpuSeconds();
  const start = now();
  for (let r = 0; r < args.rounds; r++) {
    const payload = payloadFor(args.size, r);
    let pending = subs.length;
    const done = new Promise((resolve) => {
      for (const s of subs) {
        s.onMsg = () => { s.onMsg = null; if (Buffer.compare(s.got[s.got.length - 1], payload) !== 0) errors++; if (--pending === 0) resolve(); };
      }
    });
    const acked = new Promise((resolve) => pub.once('message', (d) => resolve(String(d).split(' ').map(Number))));
    const t0 = now();
    pub.send(payload, { binary: true });
    await done;
    times.push(now() - t0);
    const [count, serverSeconds] = await acked;
    serverTimes.push(serverSeconds);
    if (count !== subs.length) errors++;
    await sleep(0.05);
  }
  pub.close();
  await Promise.all(subs.map((s) => new Promise((resolve) => { s.ws.on('close', resolve); s.ws.close(); })));
  const cpu = cpuSeconds() - cpu0;
  const elapsed = now() - start;
  times.sort((a, b) => a - b);
  serverTimes.sort((a, b) => a - b);
  return {
    ms_p50: percentile(times, 0.5) * 1e3, ms_max: times[times.length - 1] * 1e3, errors, rounds: args.rounds,
    server_send_ms_p50: percentile(serverTimes, 0.5) * 1e3, loadgen_cpu: cpu / elapsed,
  };
}

// N connections opened and held, then one small message on every connection at once.
async function idle() {
  const t0 = now();
  let clients;
  try {
    clients = await openMany(args.conns, '/', 200);
  } catch (e) {
    return { opened: 0, errors: 1, error: openError(e) };
  }
  const openSeconds = now() - t0;
  let closedEarly = 0;
  for (const c of clients) { if (c.ws) c.ws.on('close', () => { closedEarly++; }); }
  console.log(JSON.stringify({ phase: 'opened', opened: clients.length, open_seconds: openSeconds }));
  await sleep(args.hold);
  const times = [];
  console.log(JSON.stringify({ phase: 'burst' }));
  const start = now();
  const all = new Promise((resolve) => {
    let pending = clients.length;
    clients.forEach((c, i) => c.sendCb(payloadFor(32, i), (ok) => {
      if (ok) times.push(now() - start);
      if (--pending === 0) resolve(true);
    }));
  });
  const sendSeconds = now() - start;
  const finished = await Promise.race([all, sleep(args.answer_timeout).then(() => false)]);
  console.log(JSON.stringify({ phase: 'done' }));
  const answered = times.length;
  const closedBeforeEnd = closedEarly;
  const closeStart = now();
  const closedAll = await Promise.race([Promise.all(clients.map((c) => c.close())).then(() => true), sleep(30).then(() => false)]);
  const closeSeconds = closedAll ? now() - closeStart : null;
  return {
    opened: clients.length, open_seconds: openSeconds, close_seconds: closeSeconds, answered, closed_early: closedBeforeEnd, errors: clients.length - answered,
    ...burstTimes(times, finished && answered === clients.length), send_seconds: sendSeconds,
  };
}

// Per-connection answer times (seconds since the burst began) as the report wants them.
function burstTimes(times, complete) {
  times.sort((a, b) => a - b);
  return {
    all_seconds: complete ? times[times.length - 1] : null,  // null: not every connection answered
    last_seconds: times.length ? times[times.length - 1] : null,
    p50_ms: times.length ? percentile(times, 0.5) * 1e3 : null,
    p99_ms: times.length ? percentile(times, 0.99) * 1e3 : null,
    answer_seconds: complete ? times[times.length - 1] : null,
  };
}

function openError(e) {
  const text = String(e && e.message || e);
  if (/EMFILE|ENFILE/.test(text)) return `out of file descriptors (ulimit -n): ${text}`;
  return text;
}

// Open `n` pub/sub clients subscribed to `channelOf(i)`, `batch` at a time; `onMessage(s, text)` for
// everything but presence, which is only counted (joining announces itself to the whole channel).
async function openSubscribers(n, channelOf, onMessage, counters) {
  const url = `ws://127.0.0.1:${args.port}/`;
  const subs = [];
  for (let i = 0; i < n; i += 200) {
    const part = await Promise.all(Array.from({ length: Math.min(200, n - i) }, (_, k) => new Promise((resolve, reject) => {
      const index = i + k;
      const ws = new WebSocket(url, wsOptions());
      const s = { ws, index, channel: channelOf(index) };
      ws.on('open', () => ws.send(JSON.stringify({ type: 'subscribe', payload: { channel: s.channel }, timestamp: Date.now() })));
      ws.on('message', (data) => {
        const text = String(data);
        if (text.startsWith('{"type":"presence"')) { counters.presence++; counters.last = now(); return; }
        if (!s.subscribed && text.includes('"subscribed"') && JSON.parse(text).type === 'subscribed') { s.subscribed = true; resolve(s); return; }
        onMessage(s, text);
      });
      ws.on('close', () => { if (s.subscribed) counters.closed++; });
      ws.on('error', reject);
    })));
    subs.push(...part);
  }
  return subs;
}

// Wait until no presence message came for `quiet` s (at most `limit` s); true if it went quiet.
async function settle(counters, quiet, limit) {
  const end = now() + limit;
  while (now() < end) {
    if (now() - counters.last >= quiet) return true;
    await sleep(0.1);
  }
  return false;
}

// The pub/sub burst: N subscribers of one channel held, then one publish; time until all have it.
async function brokerBurst() {
  const counters = { presence: 0, last: now(), closed: 0 };
  const times = [];
  let start = null;
  let errors = 0;
  let resolveAll;
  const all = new Promise((resolve) => { resolveAll = resolve; });
  const onMessage = (s, text) => {
    const m = JSON.parse(text);
    if (m.type !== 'message' || start === null) return;
    if (s.got || m.payload.message.burst !== 1) { errors++; return; }
    s.got = true;
    times.push(now() - start);
    if (times.length === args.subscribers) resolveAll(true);
  };
  const t0 = now();
  let subs;
  try {
    subs = await openSubscribers(args.subscribers, () => 'burst', onMessage, counters);
  } catch (e) {
    return { opened: 0, errors: 1, error: openError(e) };
  }
  const openSeconds = now() - t0;
  const settled = await settle(counters, 1.0, args.settle_timeout);
  const setupSeconds = now() - t0;
  const presence = counters.presence;
  let pub;
  try {
    pub = await new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${args.port}/`, wsOptions());
      ws.on('open', () => resolve(ws));
      ws.on('error', reject);
    });
  } catch (e) {
    return { opened: subs.length, errors: 1, error: openError(e) };
  }
  console.log(JSON.stringify({ phase: 'opened', opened: subs.length, open_seconds: openSeconds, settled, presence: counters.presence }));
  await sleep(args.hold);
  const acked = new Promise((resolve) => {
    pub.on('message', (d) => { const m = JSON.parse(d); if (m.type === 'published') resolve(m.payload.notified); });
  });
  console.log(JSON.stringify({ phase: 'burst' }));
  start = now();
  pub.send(JSON.stringify({ type: 'publish', payload: { channel: 'burst', message: { burst: 1, text: 'x'.repeat(32) } }, timestamp: Date.now() }));
  const finished = await Promise.race([all, sleep(args.answer_timeout).then(() => false)]);
  console.log(JSON.stringify({ phase: 'done' }));
  const notified = await Promise.race([acked, sleep(1).then(() => null)]);
  const closedEarly = counters.closed;
  pub.close();
  await Promise.race([Promise.all(subs.map((s) => new Promise((resolve) => {
    if (s.ws.readyState === WebSocket.CLOSED) resolve(); else { s.ws.on('close', resolve); s.ws.close(); }
  }))), sleep(30)]);
  return {
    opened: subs.length, answered: times.length, notified, settled, open_seconds: openSeconds, setup_seconds: setupSeconds,
    presence, closed_early: closedEarly,
    errors: errors + (subs.length - times.length), ...burstTimes(times, finished && times.length === subs.length),
  };
}

// Chat-like sustained load: `conns` connections each sending `rate` messages/s for `duration` s,
// each on its own random phase. mode "echo": latency of each echo on its own connection.
// mode "rooms": pub/sub clients in rooms of `room_size`; each sends `chat` to its room, and the
// latency is from the send to the delivery at each other member (one process: one clock).
function p99BySecond(timeline, begin) {
  const seconds = [];
  for (const [t, l] of timeline) {
    const k = Math.max(0, Math.floor(t - begin));
    (seconds[k] = seconds[k] || []).push(l);
  }
  return Array.from(seconds, (ls) => (ls ? Math.round(percentile(ls.sort((a, b) => a - b), 0.99) * 1e3) : null));
}

async function sustained() {
  const { conns, rate, duration } = args;
  const rooms = args.mode === 'rooms';
  const roomSize = args.room_size || 10;
  const lat = [];
  const timeline = [];  // [send time, latency] with args.timeline: the p99 of each second of the load
  const lags = [];
  let sent = 0;
  let expected = 0;
  let delivered = 0;
  let own = 0;
  let errors = 0;
  const textOf = (i, k, t) => `${i} ${k} ${t.toFixed(6)} ${'hello there, the deploy is done'}`;
  const counters = { presence: 0, last: now(), closed: 0 };
  let clients;
  const t0 = now();
  try {
    if (rooms) {
      clients = await openSubscribers(conns, (i) => `room-${Math.floor(i / roomSize)}`, (s, text) => {
        const m = JSON.parse(text);
        if (m.type !== 'chat') return;
        const [from, , t] = m.payload.text.split(' ');
        if (Number(from) === s.index) { own++; return; }
        if (Math.floor(Number(from) / roomSize) !== Math.floor(s.index / roomSize)) { errors++; return; }  // misrouted
        lat.push(now() - Number(t));
        if (args.timeline) timeline.push([Number(t), now() - Number(t)]);
        delivered++;
      }, counters);
    } else {
      clients = [];
      for (let i = 0; i < conns; i += 200) {
        const part = await Promise.all(Array.from({ length: Math.min(200, conns - i) }, (_, k) => new Promise((resolve, reject) => {
          const ws = new WebSocket(`ws://127.0.0.1:${args.port}/`, wsOptions());
          const s = { ws, index: i + k, expect: [] };
          ws.on('open', () => resolve(s));
          ws.on('error', reject);
          ws.on('close', () => { counters.closed++; });
          ws.on('message', (data) => {
            const e = s.expect.shift();
            if (e === undefined || String(data) !== e[0]) { errors++; return; }
            lat.push(now() - e[1]);
            delivered++;
          });
        })));
        clients.push(...part);
      }
    }
  } catch (e) {
    return { opened: clients ? clients.length : 0, errors: 1, error: openError(e) };
  }
  const members = new Map();
  for (const s of clients) members.set(s.channel, (members.get(s.channel) || 0) + 1);
  if (rooms) await settle(counters, 0.5, 10);
  const openSeconds = now() - t0;
  const cpu0 = cpuSeconds();
  const begin = now() + 0.05;
  const end = begin + duration;
  console.log(JSON.stringify({ phase: 'load', opened: clients.length, open_seconds: openSeconds }));
  const sendOne = (s, k) => {
    const t = now();
    const text = textOf(s.index, k, t);
    let message;
    if (rooms) {
      message = JSON.stringify({ type: 'chat', payload: { channel: s.channel, text, user: `u${s.index}` }, timestamp: Date.now() });
      expected += members.get(s.channel) - 1;
    } else {
      message = JSON.stringify({ type: 'chat', payload: { channel: 'echo', text, user: `u${s.index}` }, timestamp: Date.now() });
      s.expect.push([message, t]);
      expected++;
    }
    s.ws.send(message);
    sent++;
  };
  const finished = Promise.all(clients.map((s) => new Promise((resolve) => {
    const phase = Math.random() / rate;
    let k = 0;
    const tick = () => {
      const due = begin + phase + k / rate;
      if (due >= end || s.ws.readyState !== WebSocket.OPEN) { resolve(); return; }
      lags.push(Math.max(0, now() - due));
      sendOne(s, k);
      k++;
      setTimeout(tick, Math.max(0, (begin + phase + k / rate - now()) * 1000));
    };
    setTimeout(tick, Math.max(0, (begin + phase - now()) * 1000));
  })));
  await Promise.race([finished, sleep(duration + 10)]);
  const sendEnd = now();
  const cpu = cpuSeconds() - cpu0;
  console.log(JSON.stringify({ phase: 'drain' }));
  const drainEnd = now() + args.drain_timeout;
  while (delivered < expected && now() < drainEnd) await sleep(0.05);
  const drainSeconds = now() - sendEnd;
  const closedEarly = counters.closed;
  await Promise.race([Promise.all(clients.map((s) => new Promise((resolve) => {
    if (s.ws.readyState === WebSocket.CLOSED) resolve(); else { s.ws.on('close', resolve); s.ws.close(); }
  }))), sleep(30)]);
  lat.sort((a, b) => a - b);
  lags.sort((a, b) => a - b);
  const ms = (p) => (lat.length ? percentile(lat, p) * 1e3 : null);
  return {
    opened: clients.length, open_seconds: openSeconds, sent, expected, delivered, own, errors: errors + (expected - delivered),
    p50_ms: ms(0.5), p90_ms: ms(0.9), p99_ms: ms(0.99), max_ms: lat.length ? lat[lat.length - 1] * 1e3 : null,
    lag_p99_ms: lags.length ? percentile(lags, 0.99) * 1e3 : null, closed_early: closedEarly,
    send_seconds: sendEnd - begin, drain_seconds: drainSeconds, loadgen_cpu: cpu / (sendEnd - begin),
    ...(args.timeline ? { p99_ms_by_second: p99BySecond(timeline, begin) } : {}),
  };
}

// The pub/sub server's JSON protocol: N subscribers on one channel, one publisher.
async function brokerFanOut() {
  const url = `ws://127.0.0.1:${args.port}/`;
  const subs = [];
  for (let i = 0; i < args.subscribers; i += 100) {
    const part = await Promise.all(Array.from({ length: Math.min(100, args.subscribers - i) }, () => new Promise((resolve, reject) => {
      const ws = new WebSocket(url, wsOptions());
      const s = { ws, onRound: null };
      ws.on('open', () => ws.send(JSON.stringify({ type: 'subscribe', payload: { channel: 'bench' }, timestamp: Date.now() })));
      ws.on('message', (data) => {
        const m = JSON.parse(data);
        if (m.type === 'subscribed') resolve(s);
        else if (m.type === 'message' && s.onRound) s.onRound(m.payload.message);
      });
      ws.on('error', reject);
    })));
    subs.push(...part);
  }
  const pub = await new Promise((resolve, reject) => {
    const ws = new WebSocket(url, wsOptions());
    ws.on('open', () => resolve(ws));
    ws.on('error', reject);
  });
  const times = [];
  let errors = 0;
  for (let r = 0; r < args.rounds; r++) {
    let pending = subs.length;
    const done = new Promise((resolve) => {
      for (const s of subs) {
        s.onRound = (message) => { if (message.round !== r) { errors++; return; } s.onRound = null; if (--pending === 0) resolve(); };
      }
    });
    const acked = new Promise((resolve) => {
      const listener = (d) => { const m = JSON.parse(d); if (m.type === 'published') { pub.off('message', listener); resolve(m.payload.notified); } };
      pub.on('message', listener);
    });
    const t0 = now();
    pub.send(JSON.stringify({ type: 'publish', payload: { channel: 'bench', message: { round: r, text: 'x'.repeat(32) } }, timestamp: Date.now() }));
    await done;
    times.push(now() - t0);
    if ((await acked) !== subs.length) errors++;
    await sleep(0.05);
  }
  pub.close();
  await Promise.all(subs.map((s) => new Promise((resolve) => { s.ws.on('close', resolve); s.ws.close(); })));
  times.sort((a, b) => a - b);
  return { ms_p50: percentile(times, 0.5) * 1e3, ms_max: times[times.length - 1] * 1e3, errors, rounds: args.rounds };
}

const scenarios = {
  rt: roundTrips, inflight: inFlight, handshakes, fanout: fanOut, idle, brokerfanout: brokerFanOut, brokerburst: brokerBurst, sustained,
};
scenarios[scenario]().then((r) => { console.log(JSON.stringify(r)); process.exit(0); },
  (e) => { console.log(JSON.stringify({ errors: 1, error: String(e && e.stack || e) })); process.exit(1); });
