// The server-sent event stream (GET /api/events): read with fetch, its events applied in
// short slices, its connection state, and reconnection.
//
// Why fetch and not EventSource: a late page is replayed the active runs' history in a
// few large writes (at epoch 9 of a `default` run once 1,250 events, 760 KB; now, with
// only the newest pictures kept and each run's batches as one event, ~20 events and
// 340 KB), and EventSource parses and dispatches every event in the task that received
// the bytes: one task of 350-440 ms on a phone throttled 4x (issue 13). Here the bytes
// are only cut into events when they come; each event is parsed (JSON) and applied
// later, in slices of at most SLICE_MS, in order.
//
// Events whose newest one is the whole picture (the server's status; a run's filters,
// evaluation and histograms) are skipped, not even parsed, when a newer one of the same
// kind (and run) already waits behind them (live bursts; the server's history keeps only
// the newest of each).
//
// After a cut the stream is asked again with `?after=ID` (the last event id received),
// and the server replays what was missed; while the server cannot be reached the delay
// doubles from RETRY_MIN_MS to RETRY_MAX_MS. Without an id the server starts with the
// active runs' history, each beginning with its "run" event; the handlers are idempotent.

import { STREAM_EVENTS, WHOLE_PICTURES } from './events.js';

const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 15000;
const SLICE_MS = 12;
const KNOWN = new Set(STREAM_EVENTS);
const SERVER_PICTURES = new Set(WHOLE_PICTURES.server);
const PER_RUN_PICTURES = new Set(WHOLE_PICTURES.perRun);
// The server writes run_id first in these events (app/reporter.py, app/filter_images.py,
// app/gallery.py): looked for in their head only; not found, the event is applied.
const RUN_ID = /"run_id"\s*:\s*"([^"]*)"/;

/** The key under which the newest event replaces older ones still waiting (status: one
 *  for the server; filters, evaluation, histograms: one per run), or null. */
export function pictureKey(name, text) {
  if (SERVER_PICTURES.has(name)) return name;
  if (!PER_RUN_PICTURES.has(name)) return null;
  const match = RUN_ID.exec(text.slice(0, 120));
  return match ? `${name}:${match[1]}` : null;
}

/** A parser of the event-stream format (the HTML standard's): fed text as it comes,
 *  it calls onEvent(name, data, lastId) for each complete event. */
export function sseParser(onEvent) {
  let rest = '';
  let name = '';
  let data = [];
  let lastId = null;

  function line(text) {
    if (text.endsWith('\r')) text = text.slice(0, -1);
    if (text === '') {
      if (data.length) onEvent(name || 'message', data.join('\n'), lastId);
      name = '';
      data = [];
      return;
    }
    if (text.charCodeAt(0) === 58) return;   // ":" a comment (the server's pings)
    const colon = text.indexOf(':');
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? '' : text.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (field === 'event') name = value;
    else if (field === 'data') data.push(value);
    else if (field === 'id' && !value.includes('\0')) lastId = value;
  }

  return function feed(text) {
    const buffer = rest + text;
    let start = 0;
    for (let end = buffer.indexOf('\n'); end >= 0; end = buffer.indexOf('\n', start)) {
      line(buffer.slice(start, end));
      start = end + 1;
    }
    rest = buffer.slice(start);
  };
}

// Marks on the page's performance timeline (bench/bench_render.py reads them): the
// stream first answered, and the first burst of events (a late page's replay) applied.
export const MARKS = Object.freeze({
  connected: 'cnn-live:stream-connected', caughtUp: 'cnn-live:stream-caught-up',
});

// How many received events wait to be applied (the page's one stream): a replayed
// history is still being applied while this is above 0.
let backlogOf = () => 0;
export const backlog = () => backlogOf();

/**
 * @param {object} options
 * @param {string|(() => string)} options.url  a function is asked again at each (re)connection
 * @param {(name: string, data: any, id: string|null) => void} options.onEvent
 * @param {(state: 'connected'|'reconnecting'|'disconnected') => void} options.onConnection
 * @param {boolean} [options.held]  receive at once but apply nothing until release():
 *   the page asks for the stream while it sets itself up, so that a late page's replay
 *   is on its way meanwhile (the server answers in parallel with the page's own work)
 */
export function connectStream({ url = '/api/events', onEvent, onConnection, held = false }) {
  let lastEventId = null;
  let request = null;       // the AbortController of the current request
  let retryTimer = 0;
  let retryDelay = RETRY_MIN_MS;
  let stopped = false;
  let opened = false;

  // ----- received events, applied in slices -----
  const queue = [];         // [name, text, id, key, serial]
  let head = 0;
  let serial = 0;
  const newest = new Map(); // picture key -> serial of its newest event waiting
  let draining = false;
  let caughtUp = false;     // the first connection's burst (a late page's replay) applied
  backlogOf = () => queue.length - head;
  const channel = new MessageChannel();
  channel.port1.onmessage = drain;

  function receive(name, text, id) {
    if (id) lastEventId = id;
    if (!KNOWN.has(name)) return;
    const key = pictureKey(name, text);
    serial += 1;
    if (key) newest.set(key, serial);
    queue.push([name, text, id || lastEventId, key, serial]);
    drainSoon();
  }

  function drainSoon() {
    if (draining || held || head >= queue.length) return;
    draining = true;
    channel.port2.postMessage(null);
  }

  function drain() {
    const until = performance.now() + SLICE_MS;
    while (head < queue.length && performance.now() < until) {
      const [name, text, id, key, number] = queue[head];
      queue[head] = null;
      head += 1;
      if (key) {
        if (newest.get(key) !== number) continue;   // a newer one waits behind it
        newest.delete(key);
      }
      apply(name, text, id);
    }
    if (head < queue.length) {
      channel.port2.postMessage(null);   // the rest in the next task
      return;
    }
    queue.length = 0;
    head = 0;
    draining = false;
    if (!caughtUp) {
      caughtUp = true;
      performance.mark(MARKS.caughtUp);
    }
  }

  function apply(name, text, id) {
    let data;
    try {
      data = JSON.parse(text);
    } catch (error) {
      console.warn(`cnn-live: ignored a "${name}" event whose data is not JSON`, error);
      return;
    }
    try {
      onEvent(name, data, id);
    } catch (error) {
      // One bad event must not stop the stream; report it and go on.
      console.warn(`cnn-live: could not apply a "${name}" event`, error);
    }
  }

  // ----- the connection -----
  function requestUrl() {
    const base = typeof url === 'function' ? url() : url;
    return lastEventId === null ? base
      : `${base}${base.includes('?') ? '&' : '?'}after=${encodeURIComponent(lastEventId)}`;
  }

  function retryLater(delay) {
    clearTimeout(retryTimer);
    retryTimer = setTimeout(open, delay);
  }

  async function open() {
    if (stopped) return;
    clearTimeout(retryTimer);
    retryTimer = 0;
    if (request) request.abort();
    const mine = new AbortController();
    request = mine;
    // The first connection keeps the page's initial "disconnected" until it opens.
    if (opened) onConnection('reconnecting');
    let receiving = false;
    try {
      // Low priority: a long-lived background request, not one the page waits for (a
      // high-priority request that never ends kept Lighthouse waiting for the page to
      // settle, as it ignores only EventSource's).
      const response = await fetch(requestUrl(), {
        headers: { Accept: 'text/event-stream' }, cache: 'no-store', signal: mine.signal,
        priority: 'low',
      });
      if (!response.ok || !response.body) throw new Error(`the stream answered ${response.status}`);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      const feed = sseParser(receive);
      receiving = true;
      retryDelay = RETRY_MIN_MS;
      if (!opened) performance.mark(MARKS.connected);
      opened = true;
      onConnection('connected');
      for (;;) {
        const { value, done } = await reader.read();
        if (done || mine !== request) break;
        feed(value);
      }
    } catch (error) {
      if (mine !== request || stopped) return;
      if (!receiving) {
        // The server could not be reached, or refused: wait longer each time.
        onConnection('disconnected');
        const delay = retryDelay;
        retryDelay = Math.min(retryDelay * 2, RETRY_MAX_MS);
        retryLater(delay);
        return;
      }
    }
    // The stream ended or broke (the server stopped, or let go of a page that fell
    // behind): ask again for what came after.
    if (mine !== request || stopped) return;
    onConnection('reconnecting');
    retryLater(RETRY_MIN_MS);
  }

  /** Waiting to ask again (refused, or the server unreachable): ask now. */
  function retryNow() {
    if (stopped) return;
    retryDelay = RETRY_MIN_MS;
    if (retryTimer) open();
  }

  // Come back at once when the network does, rather than waiting out the back-off.
  window.addEventListener('online', retryNow);

  open();

  return {
    lastEventId: () => lastEventId,
    retryNow,
    /** Apply what was received while held, and what comes from now on. */
    release() {
      held = false;
      drainSoon();
    },
    close() {
      stopped = true;
      clearTimeout(retryTimer);
      if (request) request.abort();
      onConnection('disconnected');
    },
  };
}
