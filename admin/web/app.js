// sipedge operations page. Plain JavaScript, no framework, no build step.
//
// Everything shown comes from the operations API of the server that
// served this file. SIP messages, URIs and user agents are written by
// anyone on the network, so they are put in the document with
// textContent and createElement only, never as HTML.
//
// The token: when admin.token is set, every API request needs
// "Authorization: Bearer TOKEN". The page takes it from ?token= in its
// address once (and removes it from the address bar), or asks for it
// when the API answers 401; it keeps it in sessionStorage (this tab only)
// and sends it as a header on every request, the event stream included
// (read with fetch rather than EventSource, which cannot send headers).
'use strict';

const $ = (id) => document.getElementById(id);
const SVGNS = 'http://www.w3.org/2000/svg';

let token = sessionStorage.getItem('sipedge-token') || '';
{
  const u = new URL(location.href);
  const t = u.searchParams.get('token');
  if (t !== null) {
    token = t;
    sessionStorage.setItem('sipedge-token', t);
    u.searchParams.delete('token');
    history.replaceState(null, '', u.pathname + u.search + u.hash);
  }
}

class Unauthorized extends Error {}

function headers() {
  return token ? { Authorization: 'Bearer ' + token } : {};
}

async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: { ...headers(), ...(opts.headers || {}) }, cache: 'no-store' });
  if (r.status === 401) {
    showLogin(token ? 'That token was refused.' : '');
    throw new Unauthorized();
  }
  return r;
}

async function apiJSON(path, opts) {
  const r = await api(path, opts);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || r.status + ' ' + r.statusText);
  return body;
}

// el builds an element: el('td', {class: 'mono'}, 'text', child...).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// ---- formatting

const pad = (n, w = 2) => String(n).padStart(w, '0');
const isZeroTime = (t) => !t || t.startsWith('0001-01-01');

function fmtClock(t, ms) {
  const d = new Date(t);
  let s = pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  if (ms) s += '.' + pad(d.getMilliseconds(), 3);
  return s;
}

// fmtFull: 2025-03-01 10:00:00.123 in the browser's time zone.
function fmtFull(t) {
  const d = new Date(t);
  return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + fmtClock(t, true);
}

function fmtWhen(t) {
  if (isZeroTime(t)) return '';
  const d = new Date(t);
  const now = new Date();
  const clock = fmtClock(t, false);
  if (d.toDateString() === now.toDateString()) return clock;
  return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + clock;
}

function fmtDuration(sec) {
  sec = Math.max(0, Math.round(sec));
  const h = Math.floor(sec / 3600), m = Math.floor(sec / 60) % 60, s = sec % 60;
  return h ? h + ':' + pad(m) + ':' + pad(s) : m + ':' + pad(s);
}

// micros is a time of the API (RFC 3339 with nanoseconds) in
// microseconds since 1970: Date keeps only milliseconds.
function micros(t) {
  const frac = (/\.(\d+)/.exec(t) || [])[1] || '';
  return Date.parse(t) * 1000 + Number(frac.padEnd(6, '0').slice(3, 6));
}

function fmtDelta(ms) {
  if (ms < 0) return '−' + fmtDelta(-ms).slice(1);
  if (ms < 1) return '+' + (ms * 1000).toFixed(0) + ' µs';
  if (ms < 1000) return '+' + ms.toFixed(ms < 10 ? 1 : 0) + ' ms';
  return '+' + (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
}

// user shows the user part of a SIP URI ("sip:alice@example.com" →
// "alice@example.com"), the whole URI as the title.
function uriCell(uri) {
  const short = (uri || '').replace(/^sips?:/, '');
  return el('td', { class: 'mono', title: uri }, short);
}

function talkSeconds(c) {
  if (isZeroTime(c.answer) || !c.answer) return null;
  if (!isZeroTime(c.end)) return c.duration_seconds;
  return (Date.now() - new Date(c.answer).getTime()) / 1000;
}

function audioBadge(media) {
  if (!media || !media.audio) return '';
  const cls = { ok: 'ok', 'one-way': 'warn', none: 'err', 'not-relayed': 'muted' }[media.audio] || 'muted';
  return el('span', { class: 'badge ' + cls }, media.audio);
}

function statusBadge(code) {
  if (!code) return '';
  const cls = code < 300 ? 'ok' : code === 487 ? 'muted' : 'err';
  return el('span', { class: 'badge ' + cls }, code);
}

// ---- tabs and routing (location.hash: #calls, #registrations,
// #connections, #bans, #call/<Call-ID>)

const tabs = ['calls', 'registrations', 'connections', 'bans', 'call'];
let current = '';
let pollTimer = 0;

function route() {
  if (!$('login').hidden) return;
  const h = decodeURIComponent(location.hash.slice(1));
  let tab = h.startsWith('call/') ? 'call' : tabs.includes(h) ? h : 'calls';
  for (const t of tabs) $('tab-' + t).hidden = t !== tab;
  for (const a of document.querySelectorAll('#tabs a')) {
    a.classList.toggle('active', a.dataset.tab === tab || (tab === 'call' && a.dataset.tab === 'calls'));
  }
  current = tab;
  clearTimeout(pollTimer);
  callView.stop();
  if (tab === 'call') callView.open(h.slice(5));
  else if (tab === 'calls') renderCalls();
  else poll();
}

// poll refreshes the tab shown every 5 s (registrations, connections,
// bans); the calls come by the event stream.
async function poll() {
  clearTimeout(pollTimer);
  try {
    if (current === 'registrations') await loadRegistrations();
    else if (current === 'connections') await loadConnections();
    else if (current === 'bans') await loadBans();
  } catch (e) {
    if (e instanceof Unauthorized) return;
    console.warn(e);
  }
  if (['registrations', 'connections', 'bans'].includes(current)) pollTimer = setTimeout(poll, 5000);
}

// ---- calls, live from the event stream

let calls = { active: [], recent: [] };
let callsFilter = '';

function matches(c, f) {
  if (!f) return true;
  const hay = [c.call_id, c.from, c.to, c.request_uri, c.source, c.status, c.ended_by, c.media && c.media.audio]
    .join(' ').toLowerCase();
  return f.split(/\s+/).every((w) => hay.includes(w));
}

function callRow(c, ended) {
  const talk = talkSeconds(c);
  let state;
  if (ended) state = statusBadge(c.status);
  else state = isZeroTime(c.answer) || !c.answer ? el('span', { class: 'badge muted' }, 'setup') : el('span', { class: 'badge ok' }, 'answered');
  const cells = [
    el('td', { class: 'nowrap' }, fmtWhen(c.start)),
    uriCell(c.from),
    uriCell(c.to),
    el('td', { class: 'mono' }, c.source),
    el('td', {}, state),
    el('td', { class: 'num', dataset: ended ? {} : { answer: c.answer || '' } }, talk === null ? '' : fmtDuration(talk)),
    el('td', {}, audioBadge(c.media)),
  ];
  if (ended) cells.push(el('td', {}, c.ended_by));
  cells.push(el('td', { class: 'mono muted', title: c.call_id }, c.call_id.length > 28 ? c.call_id.slice(0, 26) + '…' : c.call_id));
  return el('tr', { dataset: { callId: c.call_id } }, ...cells);
}

function fillTable(id, list, ended, emptyId) {
  const f = callsFilter;
  const frag = document.createDocumentFragment();
  let n = 0;
  for (const c of list) {
    if (!matches(c, f)) continue;
    frag.append(callRow(c, ended));
    n++;
  }
  const tb = $(id).tBodies[0];
  tb.replaceChildren(frag);
  $(id).hidden = n === 0;
  $(emptyId).hidden = n !== 0;
  $(emptyId).textContent = list.length && !n ? 'No call matches the filter.' : ended ? 'No call ended yet.' : 'No call in progress.';
  return n;
}

function renderCalls() {
  $('n-calls').textContent = calls.active.length || '';
  if (current !== 'calls') return;
  const a = fillTable('active-table', calls.active, false, 'active-empty');
  const r = fillTable('recent-table', calls.recent, true, 'recent-empty');
  $('n-active').textContent = calls.active.length;
  $('n-recent').textContent = calls.recent.length;
  $('calls-summary').textContent = callsFilter ? `${a + r} of ${calls.active.length + calls.recent.length} shown` : '';
}

// Talk time of calls in progress moves every second without an event.
setInterval(() => {
  if (current !== 'calls') return;
  for (const td of document.querySelectorAll('#active-table td[data-answer]')) {
    const a = td.dataset.answer;
    if (a && !isZeroTime(a)) td.textContent = fmtDuration((Date.now() - new Date(a).getTime()) / 1000);
  }
}, 1000);

for (const id of ['active-table', 'recent-table']) {
  $(id).addEventListener('click', (e) => {
    const tr = e.target.closest('tr[data-call-id]');
    if (tr) location.hash = '#call/' + encodeURIComponent(tr.dataset.callId);
  });
}

let filterTimer = 0;
$('call-filter').addEventListener('input', (e) => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => {
    callsFilter = e.target.value.trim().toLowerCase();
    renderCalls();
  }, 120);
});

// The event stream: server-sent events read with fetch, so the token
// goes as a header. Reconnects after a failure.
let streamAbort = null;

async function stream() {
  if (streamAbort) streamAbort.abort();
  const ctl = new AbortController();
  streamAbort = ctl;
  try {
    const r = await api('/api/v1/events?limit=1000', { signal: ctl.signal });
    if (!r.ok || !r.body) throw new Error('events: ' + r.status);
    setLive(true);
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let event = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
        }
        if (event === 'calls' && data.length) {
          // The whole list: at first, and when more calls ended than we keep.
          const v = JSON.parse(data.join('\n'));
          calls = { active: v.active || [], recent: v.recent || [] };
          renderCalls();
          callView.listChanged();
        } else if (event === 'update' && data.length) {
          // The calls that ended since, newest first; and either the whole
          // list of calls in progress (active) or those that started or
          // were answered since (changed), in place of our copies.
          const v = JSON.parse(data.join('\n'));
          const ended = v.ended || [];
          let active = v.active;
          if (!active) {
            const changed = v.changed || [];
            const gone = new Set(ended.map(c => c.call_id));
            const drop = new Set(changed.map(c => c.call_id).concat([...gone]));
            active = changed.filter(c => !gone.has(c.call_id))
              .concat(calls.active.filter(c => !drop.has(c.call_id)))
              .sort((a, b) => Date.parse(b.start) - Date.parse(a.start))
              .slice(0, 1000);
          }
          calls = { active, recent: ended.concat(calls.recent).slice(0, 1000) };
          renderCalls();
          callView.listChanged();
        }
      }
    }
  } catch (e) {
    if (e instanceof Unauthorized || ctl.signal.aborted) return;
  }
  if (ctl.signal.aborted) return;
  setLive(false);
  setTimeout(() => { if (streamAbort === ctl) stream(); }, 2000);
}

function setLive(on) {
  const d = $('live');
  d.classList.toggle('on', on);
  d.classList.toggle('off', !on);
  d.title = on ? 'live: the call list updates by itself' : 'not connected; retrying';
}

// ---- registrations, connections, bans

// The registrar may hold a million bindings: the filter is the API's
// (?aor=), and the page shows the first 1 000 that match.
async function loadRegistrations() {
  const f = $('reg-filter').value.trim();
  const v = await apiJSON('/api/v1/registrations?limit=1000' + (f ? '&aor=' + encodeURIComponent(f) : ''));
  const regs = v.registrations || [];
  if (!f) $('n-regs').textContent = v.total || '';
  $('regs-summary').textContent = v.truncated ? `first ${regs.length} of ${v.total}` : f ? `${v.total} match` : '';
  const frag = document.createDocumentFragment();
  for (const b of regs) {
    frag.append(el('tr', {},
      el('td', { class: 'mono' }, b.aor),
      el('td', { class: 'mono' }, b.contact),
      el('td', { class: 'mono' }, b.source),
      el('td', {}, b.nat ? el('span', { class: 'badge warn' }, 'NAT') : 'no'),
      el('td', {}, b.transport),
      el('td', { class: 'num' }, fmtDuration(b.expires_in)),
      el('td', {}, b.user_agent || '')));
  }
  $('reg-table').tBodies[0].replaceChildren(frag);
  $('reg-table').hidden = regs.length === 0;
  $('reg-empty').hidden = regs.length !== 0;
  $('reg-empty').textContent = f ? 'No registration matches the filter.' : 'No registration.';
}
let regFilterTimer = 0;
$('reg-filter').addEventListener('input', () => {
  clearTimeout(regFilterTimer);
  regFilterTimer = setTimeout(() => loadRegistrations().catch(() => {}), 250);
});

async function loadConnections() {
  const v = await apiJSON('/api/v1/connections?limit=10000');
  const list = v.connections || [];
  $('n-conns').textContent = v.total || '';
  const frag = document.createDocumentFragment();
  for (const c of list) {
    frag.append(el('tr', {},
      el('td', {}, c.transport),
      el('td', { class: 'mono' }, c.local),
      el('td', { class: 'mono' }, c.remote),
      el('td', {}, c.inbound ? 'peer' : 'sipedge'),
      el('td', { class: 'mono' }, c.tls_name || ''),
      el('td', {}, c.usable ? 'yes' : 'no'),
      el('td', { class: 'nowrap' }, c.last_write ? fmtWhen(c.last_write) : '')));
  }
  $('conn-table').tBodies[0].replaceChildren(frag);
  $('conn-table').hidden = list.length === 0;
  $('conn-empty').hidden = list.length !== 0;
}

async function loadBans() {
  const v = await apiJSON('/api/v1/bans');
  const list = v.bans || [];
  $('n-bans').textContent = list.length || '';
  const frag = document.createDocumentFragment();
  for (const b of list) {
    const lift = el('button', { type: 'button', class: 'lift' }, 'Lift');
    lift.addEventListener('click', async () => {
      lift.disabled = true;
      try {
        await apiJSON('/api/v1/bans/' + encodeURIComponent(b.source).replace(/%2F/gi, '/'), { method: 'DELETE' });
      } catch (e) {
        if (!(e instanceof Unauthorized)) alert('Lifting the ban failed: ' + e.message);
      }
      loadBans().catch(() => {});
    });
    frag.append(el('tr', {},
      el('td', { class: 'mono' }, b.source),
      el('td', {}, b.reason),
      el('td', { class: 'nowrap' }, fmtWhen(b.since)),
      el('td', { class: 'nowrap' }, fmtWhen(b.until)),
      el('td', { class: 'num' }, b.dropped),
      el('td', {}, lift)));
  }
  $('ban-table').tBodies[0].replaceChildren(frag);
  $('ban-table').hidden = list.length === 0;
  $('ban-empty').hidden = list.length !== 0;
}

// ---- health

async function health() {
  try {
    const v = await apiJSON('/healthz');
    $('health').textContent = v.status + ' · up ' + fmtDuration(v.uptime_seconds);
  } catch (e) {
    if (!(e instanceof Unauthorized)) $('health').textContent = 'unreachable';
  }
}

// VoIP survival (shown only when configured): the mode, since when, why.
async function survival() {
  try {
    const v = await apiJSON('/api/v1/survival');
    const el = $('survival');
    el.hidden = !v.enabled;
    if (!v.enabled) return;
    const since = new Date(v.since).toLocaleTimeString();
    el.className = 'badge ' + (v.mode === 'survival' ? 'warn' : 'ok');
    el.textContent = (v.mode === 'survival' ? 'survival mode' : 'upstream normal') + ' since ' + since;
    el.title = v.reason + (v.last_error ? ' · last failure: ' + v.last_error : '');
  } catch (e) {
    $('survival').hidden = true;
  }
}

// ---- one call: summary, media, ladder, messages

const callView = (() => {
  let id = '';
  let data = null;
  let selected = -1;
  let timer = 0;
  let gen = 0;

  function stop() {
    clearTimeout(timer);
    id = '';
    gen++;
  }

  async function open(callID) {
    const fresh = callID !== id;
    id = callID;
    if (fresh) {
      data = null;
      selected = -1;
      $('call-title').textContent = callID;
      $('call-summary').replaceChildren();
      $('ladder').replaceChildren();
      $('media').hidden = true;
      $('diagnosis').hidden = true;
      $('msg-head').textContent = 'Click an arrow to see its message.';
      $('msg-text').replaceChildren();
    }
    await load();
  }

  async function load() {
    const my = ++gen;
    clearTimeout(timer);
    let v;
    try {
      v = await apiJSON('/api/v1/calls/' + encodeURIComponent(id));
      $('call-error').hidden = true;
    } catch (e) {
      if (e instanceof Unauthorized || my !== gen) return;
      $('call-error').textContent = e.message;
      $('call-error').hidden = false;
      return;
    }
    if (my !== gen) return;
    data = v;
    render();
    // A call in progress (or one whose record is not there yet) is
    // fetched again: new messages, media counters.
    if (!v.end || isZeroTime(v.end)) timer = setTimeout(load, 2000);
  }

  // listChanged: the call list moved; a call shown as in progress may
  // have ended.
  function listChanged() {
    if (current === 'call' && id && data && (!data.end || isZeroTime(data.end))) {
      clearTimeout(timer);
      timer = setTimeout(load, 300);
    }
  }

  function render() {
    const c = data;
    const dl = $('call-summary');
    dl.replaceChildren();
    const add = (k, v) => { if (v !== undefined && v !== null && v !== '') dl.append(el('dt', {}, k), el('dd', {}, v)); };
    add('From', c.from);
    add('To', c.to);
    add('Request-URI', c.request_uri);
    add('Source', c.source);
    add('Start', c.start && !isZeroTime(c.start) ? fmtFull(c.start) : '');
    add('Answered', c.answer && !isZeroTime(c.answer) ? fmtFull(c.answer) : c.start ? 'no' : '');
    add('Ended', c.end && !isZeroTime(c.end) ? fmtFull(c.end) + (c.ended_by ? ' by ' + c.ended_by : '') : c.start ? 'in progress' : '');
    add('Status', c.status || '');
    const talk = talkSeconds(c);
    add('Talk time', talk === null ? '' : fmtDuration(talk));
    add('Setup', c.setup_ms ? c.setup_ms + ' ms' : '');
    add('Messages', (c.messages || []).length + (c.messages_dropped ? ` (${c.messages_dropped} more not kept)` : ''));
    renderMedia(c.media);
    renderLadder(c.messages || []);
    if (selected >= 0 && c.messages && selected < c.messages.length) select(selected, false);
  }

  function renderMedia(m) {
    const diag = $('diagnosis');
    const box = $('media');
    diag.hidden = !m || !m.diagnosis || !m.diagnosis.length;
    if (!diag.hidden) {
      diag.replaceChildren(el('h3', {}, 'Why no audio'), el('ul', {}, ...m.diagnosis.map((s) => el('li', {}, s))));
    }
    box.hidden = !m;
    if (!m) return;
    const num = (v, digits) => (v === undefined || v === null ? '' : typeof v === 'number' && digits !== undefined ? v.toFixed(digits) : v);
    const rows = [];
    for (const s of m.streams || []) {
      for (const leg of s.legs || []) {
        const notes = [];
        if (leg.sdp_private) notes.push('private SDP address');
        if (leg.latched) notes.push('latched');
        if (leg.foreign) notes.push(leg.foreign + ' foreign' + (leg.foreign_source ? ' from ' + leg.foreign_source : ''));
        if (leg.dropped) notes.push(leg.dropped + ' dropped');
        rows.push(el('tr', { class: 'media-leg', dataset: { side: leg.side || '', packets: leg.packets || 0 } },
          el('td', {}, (s.type || 'stream') + ' ' + (s.index ?? '')),
          el('td', {}, 'from ' + (leg.side || '?')),
          el('td', {}, leg.codec || ''),
          el('td', { class: 'mono' }, leg.source || ''),
          el('td', { class: 'mono' }, leg.sdp || ''),
          el('td', { class: 'mono' }, leg.relay || ''),
          el('td', { class: 'num packets' }, num(leg.packets)),
          el('td', { class: 'num' }, num(leg.bytes)),
          el('td', { class: 'num' }, num(leg.loss_pct, 1)),
          el('td', { class: 'num' }, num(leg.jitter_ms, 1)),
          el('td', { class: 'num' }, num(leg.mos, 2)),
          el('td', {}, notes.join(', '))));
      }
    }
    box.replaceChildren(
      el('h3', {}, 'Media ', audioBadge(m)),
      el('table', { class: 'list' },
        el('thead', {}, el('tr', {}, ...['Stream', 'Direction', 'Codec', 'Source', 'SDP', 'Relay', 'Packets', 'Bytes', 'Loss %', 'Jitter ms', 'MOS', '']
          .map((h) => el('th', {}, h)))),
        el('tbody', {}, ...rows)));
  }

  // kind of a message for its colour: a request, or a response by class.
  function kind(m) {
    const code = /^(\d{3})\b/.exec(m.label || '');
    if (!code) return 'req';
    const n = +code[1];
    return n < 200 ? 'prov' : n < 300 ? 'ok' : 'err';
  }

  // renderLadder draws the messages as sngrep does: a column per address
  // in the order they appear (sipedge's own marked), an arrow per message
  // with its method or status, the SDP summary under it, the time and the
  // time since the message before on the left.
  function renderLadder(msgs) {
    const root = $('ladder');
    root.replaceChildren();
    if (!msgs.length) {
      root.setAttribute('width', 400);
      root.setAttribute('height', 40);
      root.append(svg('text', { x: 12, y: 24, class: 'delta' }, 'No message kept for this call.'));
      return;
    }
    const cols = [], index = new Map(), ours = [];
    const src = (m) => (m.dir === 'in' ? m.remote : m.local);
    const dst = (m) => (m.dir === 'in' ? m.local : m.remote);
    const col = (a, local) => {
      if (!index.has(a)) { index.set(a, cols.length); cols.push(a); ours.push(false); }
      const i = index.get(a);
      ours[i] = ours[i] || local;
      return i;
    };
    for (const m of msgs) { col(src(m), m.dir !== 'in'); col(dst(m), m.dir === 'in'); }
    const maxLabel = Math.max(...msgs.map((m) => (m.label || '').length), ...cols.map((c) => c.length));
    const colW = Math.min(Math.max(190, maxLabel * 7.6 + 40), 300);
    const left = 118, top = 56, rowH = 30, sdpH = 14;
    const x = (i) => left + colW / 2 + i * colW;
    const width = left + cols.length * colW + 10;
    let y = top + 20;
    const rows = msgs.map((m) => { const r = y; y += rowH + (m.sdp ? sdpH : 0); return r; });
    const height = y + 10;
    root.setAttribute('width', width);
    root.setAttribute('height', height);
    root.setAttribute('viewBox', `0 0 ${width} ${height}`);

    const defs = svg('defs');
    for (const k of ['req', 'prov', 'ok', 'err']) {
      const mk = svg('marker', { id: 'arrow-' + k, viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 9, markerHeight: 9,
        markerUnits: 'userSpaceOnUse', orient: 'auto-start-reverse' });
      mk.append(svg('path', { d: 'M0,0 L10,5 L0,10 z', class: k }));
      defs.append(mk);
    }
    root.append(defs);

    cols.forEach((a, i) => {
      const g = svg('g', { class: 'col' });
      const w = colW - 24;
      g.append(svg('rect', { x: x(i) - w / 2, y: 8, width: w, height: ours[i] ? 38 : 26, rx: 4, class: 'col-box' + (ours[i] ? ' ours' : '') }));
      g.append(svg('text', { x: x(i), y: 25, 'text-anchor': 'middle', class: 'col-addr' }, a));
      if (ours[i]) g.append(svg('text', { x: x(i), y: 40, 'text-anchor': 'middle', class: 'col-name' }, 'sipedge'));
      g.append(svg('line', { x1: x(i), y1: ours[i] ? 46 : 34, x2: x(i), y2: height - 6, class: 'life' }));
      root.append(g);
    });

    let prev = null;
    msgs.forEach((m, n) => {
      const k = kind(m);
      const y0 = rows[n];
      const g = svg('g', { class: 'msg', 'data-index': n });
      g.append(svg('rect', { x: 0, y: y0 - 17, width, height: rowH + (m.sdp ? sdpH : 0), class: 'hit' }));
      const t = micros(m.time);
      g.append(svg('text', { x: 8, y: y0 - 2, class: 'time' }, fmtClock(m.time, true)));
      if (prev !== null) g.append(svg('text', { x: 8, y: y0 + 10, class: 'delta' }, fmtDelta((t - prev) / 1000)));
      prev = t;
      const a = x(index.get(src(m))), b = x(index.get(dst(m)));
      let label = m.label || '?';
      if (m.sdp) label += ' (SDP)';
      if (a === b) {
        g.append(svg('path', { d: `M${a},${y0 - 6} h36 v12 h-34`, fill: 'none', class: 'arrow ' + k, 'marker-end': `url(#arrow-${k})` }));
        g.append(svg('text', { x: a + 44, y: y0 + 4, class: 'label ' + k }, label));
      } else {
        g.append(svg('line', { x1: a, y1: y0, x2: b + (b > a ? -1 : 1), y2: y0, class: 'arrow ' + k, 'marker-end': `url(#arrow-${k})` }));
        g.append(svg('text', { x: (a + b) / 2, y: y0 - 5, 'text-anchor': 'middle', class: 'label ' + k }, label));
        if (m.sdp) g.append(svg('text', { x: Math.min(a, b) + 8, y: y0 + 13, class: 'sdp' }, m.sdp));
      }
      const title = svg('title', {}, `${m.transport} ${src(m)} → ${dst(m)}`);
      g.append(title);
      g.addEventListener('click', () => select(n, true));
      root.append(g);
    });
  }

  function select(n, scroll) {
    const msgs = (data && data.messages) || [];
    if (n < 0 || n >= msgs.length) return;
    selected = n;
    for (const g of document.querySelectorAll('#ladder g.msg')) g.classList.toggle('sel', +g.dataset.index === n);
    const m = msgs[n];
    const src = m.dir === 'in' ? m.remote : m.local;
    const dst = m.dir === 'in' ? m.local : m.remote;
    $('msg-head').textContent = `#${n + 1}  ${m.time.replace('T', ' ')}  ${m.transport}  ${src} → ${dst}  ${m.size} bytes` +
      (m.text.length < m.size ? ` (first ${m.text.length} kept)` : '');
    const text = m.text.replace(/\r\n/g, '\n');
    const nl = text.indexOf('\n');
    const first = nl < 0 ? text : text.slice(0, nl + 1);
    $('msg-text').replaceChildren(el('span', { class: 'first' }, first), nl < 0 ? '' : text.slice(nl + 1));
    if (scroll) {
      const g = document.querySelector(`#ladder g.msg[data-index="${n}"]`);
      if (g && g.scrollIntoView) g.scrollIntoView({ block: 'nearest' });
    }
  }

  document.querySelector('.ladder-wrap').addEventListener('keydown', (e) => {
    if (e.key === 'ArrowDown' || e.key === 'j') { select(selected + 1, true); e.preventDefault(); }
    if (e.key === 'ArrowUp' || e.key === 'k') { select(Math.max(selected - 1, 0), true); e.preventDefault(); }
  });

  // Downloads go through fetch (the token is a header), then a link to
  // the blob.
  async function download(suffix, name) {
    try {
      const r = await api('/api/v1/calls/' + encodeURIComponent(id) + suffix);
      if (!r.ok) throw new Error(r.status + ' ' + r.statusText);
      const disp = r.headers.get('Content-Disposition') || '';
      const fn = (/filename="([^"]+)"/.exec(disp) || [])[1] || name;
      const url = URL.createObjectURL(await r.blob());
      const a = el('a', { href: url, download: fn });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) {
      if (!(e instanceof Unauthorized)) alert('Download failed: ' + e.message);
    }
  }
  $('dl-ladder').addEventListener('click', () => download('/ladder.txt', 'call.txt'));
  $('dl-pcap').addEventListener('click', () => download('/pcap', 'call.pcap'));

  return { open, stop, listChanged };
})();

// ---- login

function showLogin(msg) {
  if (streamAbort) streamAbort.abort();
  streamAbort = null;
  setLive(false);
  for (const t of tabs) $('tab-' + t).hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = msg || '';
  $('token').focus();
}

$('login-form').addEventListener('submit', (e) => {
  e.preventDefault();
  token = $('token').value;
  sessionStorage.setItem('sipedge-token', token);
  $('login').hidden = true;
  startAll();
});

function startAll() {
  health();
  survival();
  stream();
  route();
  // The counts in the tab bar.
  if (current !== 'registrations') loadRegistrations().catch(() => {});
  if (current !== 'bans') loadBans().catch(() => {});
}

window.addEventListener('hashchange', route);
setInterval(() => { if ($('login').hidden) { health(); survival(); } }, 5000);
startAll();
