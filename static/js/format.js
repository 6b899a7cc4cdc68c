// Small, pure formatting helpers shared by the other modules.

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
// Made once: toLocaleTimeString builds a formatter at every call (about 1 ms each on a
// slow phone; the runs list asks for one per row update).
const clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });

/** Seconds as "m:ss", or "h:mm:ss" from an hour on; "–" when unknown. */
export function formatDuration(seconds) {
  if (seconds == null || !Number.isFinite(seconds) || seconds < 0) return '–';
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

/** A fraction 0..1 as a percentage, e.g. 0.9912 -> "99.12%". */
export function formatPercent(value, digits = 2) {
  if (value == null || !Number.isFinite(value)) return '–';
  return `${(value * 100).toFixed(digits)}%`;
}

/** A whole number with thousands separators. */
export function formatInteger(value) {
  if (value == null || !Number.isFinite(value)) return '–';
  return integer.format(value);
}

/** A loss or weight: four significant digits, no exponent for ordinary sizes. */
export function formatNumber(value, digits = 4) {
  if (value == null || !Number.isFinite(value)) return '–';
  if (value === 0) return '0';
  const abs = Math.abs(value);
  if (abs >= 1e5 || abs < 1e-4) return value.toExponential(2);
  return String(Number(value.toPrecision(digits)));
}

/** A timestamp (ISO string or Unix seconds/milliseconds) as local "HH:MM". */
export function formatClock(value) {
  if (value == null || value === '') return '';
  let date;
  if (typeof value === 'number') date = new Date(value < 1e12 ? value * 1000 : value);
  else date = new Date(value);
  if (Number.isNaN(date.getTime())) return '';
  return clock.format(date);
}

/** Run `task` at most once per animation frame, however often it is requested.
 *  A timer backs the frame up, so that a hidden tab still catches up now and then. */
export function frameTask(task) {
  let frame = 0;
  let timer = 0;
  const run = () => {
    cancelAnimationFrame(frame);
    clearTimeout(timer);
    frame = 0;
    timer = 0;
    task();
  };
  return function request() {
    if (frame || timer) return;
    frame = requestAnimationFrame(run);
    timer = setTimeout(run, 250);
  };
}

/** Read a CSS custom property from the root element. */
export function cssVar(name, fallback = '') {
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value || fallback;
}

/** A CSS colour (#rgb, #rrggbb or rgb()/rgba()) as [r, g, b], else `fallback`. */
export function parseColour(text, fallback) {
  const value = (text || '').trim();
  let m = /^#([0-9a-f]{6})$/i.exec(value);
  if (m) {
    const n = parseInt(m[1], 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }
  m = /^#([0-9a-f]{3})$/i.exec(value);
  if (m) return [...m[1]].map((h) => parseInt(h + h, 16));
  m = /^rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)/i.exec(value);
  if (m) return [Number(m[1]), Number(m[2]), Number(m[3])];
  return fallback;
}

// Paced tasks run on the ticks of one shared clock, so that the charts, the figures and
// the progress that change while a run trains change in the same frames: every frame
// the page paints copies its canvases for the compositor (about 15 ms a frame on a phone
// throttled 4x, whatever changed), and text written on its own timer cost a frame of its
// own (10 frames a second where 5 do).
const TICK_MS = 200;
const nextTick = (at) => Math.ceil(at / TICK_MS) * TICK_MS;

// Paced tasks due in the same frame share it up to FRAME_BUDGET_MS: past it, the rest
// wait for the next frame. A late page's charts, filters, matrix and histograms all fell
// due when its replay was applied, and drawn in one frame made one task of 300 ms on a
// phone throttled 4x; one a frame, the longest is the charts' (issue 13).
const FRAME_BUDGET_MS = 40;
const frameQueue = [];
let frameAsked = false;

function runFrame() {
  frameAsked = false;
  const until = performance.now() + FRAME_BUDGET_MS;
  while (frameQueue.length) {
    frameQueue.shift()();
    if (frameQueue.length && performance.now() > until) {
      frameAsked = true;
      requestAnimationFrame(runFrame);
      return;
    }
  }
}

/** Run `task` in the next animation frame that has room (see FRAME_BUDGET_MS). */
function inFrame(task) {
  frameQueue.push(task);
  if (!frameAsked) {
    frameAsked = true;
    requestAnimationFrame(runFrame);
  }
}

/** Run `task` at most once per `interval` ms, on an animation frame, however often it
 *  is requested; and never more than `share` of the time: a task that took 50 ms waits
 *  at least 50 / share ms before it runs again (a slow phone keeps its main thread).
 *  While requests keep coming closer than `quiet` ms apart, or `settled()` says more
 *  is on its way (a late page is applying a run's replayed history), the run waits for
 *  the burst to end, up to `maxWait` ms, so that the history is painted in one pass.
 *  Runs fall on the shared clock's ticks (TICK_MS). A timer backs the frame up, so
 *  that a hidden tab still catches up now and then. */
export function pacedTask(task, { interval = 200, share = 0.15, quiet = 30, maxWait = 1500,
  settled = () => true } = {}) {
  let timer = 0;
  let inFrameQueue = false; // a run waits for its frame
  let last = -Infinity;     // when the task last ran
  let wait = interval;      // how long after it the next run may come
  let asked = 0;            // when it was last requested
  let firstAsked = 0;       // when the pending run was first requested
  const run = () => {
    if (!inFrameQueue) return;   // the timer ran it already (or the frame did)
    inFrameQueue = false;
    clearTimeout(timer);
    timer = 0;
    const queued = frameQueue.indexOf(run);   // run by the timer (a hidden tab has no frames)
    if (queued >= 0) frameQueue.splice(queued, 1);
    const start = performance.now();
    last = start;
    task();
    // Measured after the microtasks the task queued (uPlot draws in one).
    queueMicrotask(() => { wait = Math.max(interval, (performance.now() - start) / share); });
  };
  const check = () => {
    timer = 0;
    waitingLong = false;
    const now = performance.now();
    if ((now - asked < quiet || !settled()) && now - firstAsked < maxWait) {
      timer = setTimeout(check, quiet);
      return;
    }
    inFrameQueue = true;
    inFrame(run);
    timer = setTimeout(run, 250);
  };
  let waitingLong = false;   // the pending run waits out the share, not just the interval
  /** `urgent`: something a person waits for (a new view, an epoch's figures), not one
   *  more batch: only the interval applies, not the share. */
  return function request(urgent = false) {
    const now = performance.now();
    asked = now;
    if (inFrameQueue) return;
    if (timer) {
      if (!urgent || !waitingLong) return;
      clearTimeout(timer);
    } else {
      firstAsked = now;
    }
    const gap = urgent ? interval : wait;
    waitingLong = gap > interval;
    const due = urgent ? last + gap : nextTick(last + gap);
    timer = setTimeout(check, Math.max(quiet, due - now));
  };
}

/** A paragraph `text` of class `className` in place of `el`'s children (an empty state). */
export function placeholder(el, text, className) {
  const p = document.createElement('p');
  p.className = className;
  p.textContent = text;
  el.replaceChildren(p);
}
