// The simulator page: drives the wasm build of the Terminus core
// (pkg/terminus_wasm.js, made by wasm/build.sh) in batches from
// requestAnimationFrame, so the page stays responsive however large the run.

import init, { OfflineSimulation, LiveSimulation } from './pkg/terminus_wasm.js';

/** Time one frame may spend stepping the simulation, in ms. */
const FRAME_BUDGET_MS = 12;
/** Points kept for the chart. */
const CHART_POINTS = 900;
/** Frames kept in the log view. */
const LOG_ROWS = 300;
/** Longest frame text shown in the log. */
const LOG_TEXT_CHARS = 400;

const $ = (id) => document.getElementById(id);

const state = {
  mode: 'offline',
  /** The running OfflineSimulation or LiveSimulation, or null. */
  sim: null,
  running: false,
  settled: false,
  counters: null,
  findings: null,
  history: [],
  /** The most live operations seen during the run. */
  peakLive: 0,
  logRows: [],
  frameRequested: false,
};

// Exposed for the end-to-end test and for people poking at the console.
window.terminusSimulator = state;

function status(text, kind = '') {
  const el = $('status');
  el.textContent = text;
  el.className = 'status' + (kind ? ' ' + kind : '');
}

function numberField(form, name) {
  const input = form.elements.namedItem(name);
  const value = Number(input.value);
  if (input.value.trim() === '' || !Number.isFinite(value)) {
    throw new Error(`${name} must be a number`);
  }
  return value;
}

function offlineOptions() {
  const form = $('offline-form');
  const n = (name) => numberField(form, name);
  return {
    seed: n('seed'),
    clients: n('clients'),
    legacyShare: n('legacyShare'),
    opsMin: n('opsMin'),
    opsMax: n('opsMax'),
    completeEarly: n('completeEarly'),
    latencyMs: n('latencyMs'),
    durationMs: n('durationMs'),
    faults: {
      abruptDisconnect: n('abruptDisconnect'),
      lostPong: n('lostPong'),
      slowReader: n('slowReader'),
      upstreamError: n('upstreamError'),
      duplicateId: n('duplicateId'),
      malformedFrame: n('malformedFrame'),
      rejectAuth: n('rejectAuth'),
    },
  };
}

function liveOptions() {
  const form = $('live-form');
  const n = (name) => numberField(form, name);
  return {
    url: form.elements.namedItem('url').value.trim(),
    seed: n('seed'),
    clients: n('clients'),
    legacyShare: n('legacyShare'),
    subscriptionsPerClient: n('subscriptionsPerClient'),
    tickEveryMs: n('tickEveryMs'),
    completeEarly: n('completeEarly'),
    faultWindowMs: n('faultWindowMs'),
    faults: {
      abruptDisconnect: n('abruptDisconnect'),
      upstreamError: n('upstreamError'),
      duplicateId: n('duplicateId'),
      malformedFrame: n('malformedFrame'),
    },
  };
}

function stopCurrent() {
  if (state.sim) {
    state.sim.free();
  }
  state.sim = null;
  state.running = false;
  state.settled = false;
  state.counters = null;
  state.findings = null;
  state.history = [];
  state.peakLive = 0;
  state.logRows = [];
  renderLog();
  setButtons();
}

function setButtons() {
  const live = state.mode === 'live' && state.sim !== null;
  $('l-drop').disabled = !live;
  $('l-close').disabled = !live;
  const offline = state.mode === 'offline' && state.sim !== null && !state.settled;
  $('o-pause').disabled = !offline;
  $('o-pause').textContent = state.running || !offline ? 'Pause' : 'Resume';
}

function selectedClient() {
  const value = Number($('log-client').value);
  return Number.isInteger(value) && value >= 0 ? value : undefined;
}

function startOffline() {
  stopCurrent();
  let options;
  try {
    options = offlineOptions();
    state.sim = new OfflineSimulation(JSON.stringify(options));
  } catch (e) {
    status(String(e.message || e), 'error');
    return;
  }
  state.stepsPerFrame = Math.max(1, numberField($('offline-form'), 'stepsPerFrame'));
  state.sim.selectClient(selectedClient());
  state.running = true;
  state.history = [[0, 0]];
  status(`Running ${options.clients} simulated clients, seed ${options.seed}…`);
  setButtons();
  requestFrame();
}

function startLive() {
  stopCurrent();
  let options;
  try {
    options = liveOptions();
    state.sim = new LiveSimulation(JSON.stringify(options));
  } catch (e) {
    status(String(e.message || e), 'error');
    return;
  }
  state.sim.selectClient(selectedClient());
  state.running = true;
  state.history = [[0, 0]];
  status(`Connecting ${options.clients} browser WebSockets to ${options.url}…`);
  setButtons();
  requestFrame();
}

function requestFrame() {
  if (!state.frameRequested) {
    state.frameRequested = true;
    requestAnimationFrame(frame);
  }
}

function frame() {
  state.frameRequested = false;
  const sim = state.sim;
  if (!sim) {
    return;
  }
  if (state.mode === 'offline') {
    if (state.running) {
      const deadline = performance.now() + FRAME_BUDGET_MS;
      let more = true;
      while (more && performance.now() < deadline) {
        more = sim.step(state.stepsPerFrame);
      }
      if (!more) {
        state.running = false;
        state.settled = true;
        state.findings = JSON.parse(sim.findings() || '[]');
      }
    }
  } else {
    sim.tick();
  }
  state.counters = JSON.parse(sim.counters());
  const c = state.counters;
  state.peakLive = Math.max(state.peakLive, c.liveOperations);
  state.history.push([c.nowMs, c.liveOperations]);
  if (state.history.length > CHART_POINTS) {
    state.history.splice(0, state.history.length - CHART_POINTS);
  }
  takeLog(sim);
  renderCounters();
  renderChart();
  if (state.settled) {
    const f = state.findings;
    if (f.length === 0) {
      status(`Finished at ${formatMs(c.nowMs)} virtual: every operation ended, 0 invariant violations.`, 'good');
    } else {
      status(`Finished with ${f.length} invariant violation(s): ${f.slice(0, 3).join('; ')}`, 'error');
      console.error('simulation findings', f);
    }
    setButtons();
  } else if (state.mode === 'live') {
    status(`${c.openClients} of ${c.clients} sockets open, ${c.readyClients} acknowledged, ${c.results} results received.`);
  }
  if (state.running || state.mode === 'live') {
    requestFrame();
  }
}

function takeLog(sim) {
  const frames = JSON.parse(sim.takeLog());
  if (frames.length === 0) {
    return;
  }
  state.logRows.push(...frames);
  if (state.logRows.length > LOG_ROWS) {
    state.logRows.splice(0, state.logRows.length - LOG_ROWS);
  }
  renderLog();
}

function formatMs(ms) {
  return ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${ms} ms`;
}

function renderCounters() {
  const c = state.counters;
  if (!c) {
    return;
  }
  $('c-clients').textContent = `${c.openClients} / ${c.clients}`;
  $('c-liveOperations').textContent = c.liveOperations;
  $('c-started').textContent = c.started;
  $('c-completed').textContent = c.completed;
  $('c-errored').textContent = c.errored;
  $('c-cancelled').textContent = c.cancelled;
  $('c-violations').textContent = c.violations;
  $('c-violations').parentElement.classList.toggle('bad', c.violations > 0);
  $('c-violations').parentElement.classList.toggle('ok', c.violations === 0);
  $('c-faults').textContent = c.faults;
  $('c-time').textContent = formatMs(c.nowMs);
}

function renderLog() {
  const list = $('log');
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  list.replaceChildren(
    ...state.logRows.map((f) => {
      const li = document.createElement('li');
      const at = document.createElement('span');
      at.className = 'at';
      at.textContent = `${f.atMs}`;
      const dir = document.createElement('span');
      dir.className = 'dir ' + (f.fromClient ? 'out' : 'in');
      dir.textContent = f.fromClient ? '→' : '←';
      dir.title = f.fromClient ? 'client to gateway' : 'gateway to client';
      const text = document.createElement('span');
      text.className = 'text';
      text.textContent = f.text.length > LOG_TEXT_CHARS ? f.text.slice(0, LOG_TEXT_CHARS) + '…' : f.text;
      li.append(at, dir, text);
      return li;
    }),
  );
  if (atBottom) {
    list.scrollTop = list.scrollHeight;
  }
}

function renderChart() {
  const canvas = $('chart');
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const pad = { left: 48, right: 12, top: 10, bottom: 24 };
  const w = width - pad.left - pad.right;
  const h = height - pad.top - pad.bottom;
  const points = state.history;
  const t0 = points.length ? points[0][0] : 0;
  const t1 = points.length ? Math.max(points[points.length - 1][0], t0 + 1) : 1;
  const maxY = Math.max(10, ...points.map((p) => p[1]));
  const niceMax = niceCeil(maxY);
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = '#5b6475';
  ctx.strokeStyle = '#e3e6ec';
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = pad.top + h - (h * i) / 4;
    ctx.beginPath();
    ctx.moveTo(pad.left, y);
    ctx.lineTo(pad.left + w, y);
    ctx.stroke();
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    ctx.fillText(String(Math.round((niceMax * i) / 4)), pad.left - 6, y);
  }
  ctx.textAlign = 'left';
  ctx.textBaseline = 'top';
  ctx.fillText(formatMs(t0), pad.left, pad.top + h + 6);
  ctx.textAlign = 'right';
  ctx.fillText(formatMs(t1), pad.left + w, pad.top + h + 6);
  if (points.length < 2) {
    return;
  }
  const x = (t) => pad.left + ((t - t0) / (t1 - t0)) * w;
  const y = (v) => pad.top + h - (v / niceMax) * h;
  ctx.beginPath();
  ctx.moveTo(x(points[0][0]), y(0));
  for (const [t, v] of points) {
    ctx.lineTo(x(t), y(v));
  }
  ctx.lineTo(x(points[points.length - 1][0]), y(0));
  ctx.closePath();
  ctx.fillStyle = 'rgba(43, 108, 176, 0.15)';
  ctx.fill();
  ctx.beginPath();
  points.forEach(([t, v], i) => (i === 0 ? ctx.moveTo(x(t), y(v)) : ctx.lineTo(x(t), y(v))));
  ctx.strokeStyle = '#2b6cb0';
  ctx.lineWidth = 2;
  ctx.stroke();
}

function niceCeil(v) {
  const magnitude = 10 ** Math.floor(Math.log10(v));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * magnitude >= v) {
      return step * magnitude;
    }
  }
  return 10 * magnitude;
}

function switchMode(mode) {
  if (mode === state.mode) {
    return;
  }
  stopCurrent();
  state.mode = mode;
  for (const tab of document.querySelectorAll('.tab')) {
    tab.classList.toggle('active', tab.dataset.mode === mode);
  }
  $('offline-form').hidden = mode !== 'offline';
  $('live-form').hidden = mode !== 'live';
  for (const id of ['c-clients', 'c-liveOperations', 'c-started', 'c-completed', 'c-errored', 'c-cancelled', 'c-violations', 'c-faults', 'c-time']) {
    $(id).textContent = '–';
  }
  renderChart();
  status(mode === 'offline' ? 'Ready: a seeded simulation runs entirely in this page.' : 'Ready: connects real WebSockets to the gateway.');
}

async function main() {
  await init();
  const url = location.protocol === 'https:' || location.protocol === 'http:'
    ? `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql`
    : 'ws://127.0.0.1:8080/graphql';
  $('l-url').value = url;
  for (const tab of document.querySelectorAll('.tab')) {
    tab.addEventListener('click', () => switchMode(tab.dataset.mode));
  }
  $('offline-form').addEventListener('submit', (e) => {
    e.preventDefault();
    startOffline();
  });
  $('live-form').addEventListener('submit', (e) => {
    e.preventDefault();
    startLive();
  });
  $('o-pause').addEventListener('click', () => {
    state.running = !state.running;
    setButtons();
    if (state.running) {
      requestFrame();
    }
  });
  $('l-drop').addEventListener('click', () => state.sim && state.sim.dropAll());
  $('l-close').addEventListener('click', () => state.sim && state.sim.closeAll());
  $('log-client').addEventListener('change', () => {
    state.logRows = [];
    renderLog();
    if (state.sim) {
      state.sim.selectClient(selectedClient());
    }
  });
  renderChart();
  state.ready = true;
  status('Ready: a seeded simulation runs entirely in this page.');
}

main().catch((e) => {
  status(`The core failed to load: ${e.message || e}`, 'error');
  console.error(e);
});
