// The server-sent event stream: one EventSource, its connection state, and a
// reconnect of our own when the browser gives up (readyState CLOSED).
//
// While the browser retries by itself it sends Last-Event-ID and the server replays
// what was missed. A new EventSource cannot send that header, so a reconnect of our
// own asks for the same with `?after=ID`. (Without either, the server starts with the
// active runs' history, each beginning with its "run" event; the handlers are idempotent.)

import { STREAM_EVENTS } from './events.js';

const RETRY_MIN_MS = 1000;
const SLICE_MS = 12;
const RETRY_MAX_MS = 15000;

/**
 * @param {object} options
 * @param {string|(() => string)} options.url  a function is asked again at each (re)connection
 * @param {(name: string, data: any, id: string|null) => void} options.onEvent
 * @param {(state: 'connected'|'reconnecting'|'disconnected') => void} options.onConnection
 */
// How many received events wait to be applied (the page's one stream): a replayed
// history is still coming in while this is above 0.
let backlogOf = () => 0;
export const backlog = () => backlogOf();

export function connectStream({ url = '/api/events', onEvent, onConnection }) {
  let source = null;
  let lastEventId = null;
  let retryTimer = 0;
  let retryDelay = RETRY_MIN_MS;
  let stopped = false;
  let opened = false;

  const setConnection = (state) => onConnection(state);

  // Events are applied in slices of at most SLICE_MS, in order: a late page is sent a
  // run's history in a few large writes, and applying thousands of events in the task
  // that received them blocked a slow phone for over half a second (issue 13).
  const queue = [];
  let head = 0;
  let draining = false;
  backlogOf = () => queue.length - head;
  const channel = new MessageChannel();
  channel.port1.onmessage = drain;

  function dispatch(name, event) {
    if (event.lastEventId) lastEventId = event.lastEventId;
    queue.push([name, event.data, event.lastEventId || lastEventId]);
    if (!draining) {
      draining = true;
      channel.port2.postMessage(null);
    }
  }

  function drain() {
    const until = performance.now() + SLICE_MS;
    while (head < queue.length && performance.now() < until) {
      const [name, text, id] = queue[head];
      queue[head] = null;
      head += 1;
      apply(name, text, id);
    }
    if (head < queue.length) {
      channel.port2.postMessage(null);   // the rest in the next task
      return;
    }
    queue.length = 0;
    head = 0;
    draining = false;
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

  function scheduleReconnect() {
    clearTimeout(retryTimer);
    const delay = retryDelay;
    retryDelay = Math.min(retryDelay * 2, RETRY_MAX_MS);
    retryTimer = setTimeout(open, delay);
  }

  function open() {
    if (stopped) return;
    clearTimeout(retryTimer);
    if (source) source.close();
    const base = typeof url === 'function' ? url() : url;
    const resumeUrl = lastEventId === null ? base
      : `${base}${base.includes('?') ? '&' : '?'}after=${encodeURIComponent(lastEventId)}`;
    const es = new EventSource(resumeUrl);
    source = es;
    // The first connection keeps the page's initial "disconnected" until it opens.
    if (opened) setConnection('reconnecting');

    es.addEventListener('open', () => {
      if (es !== source) return;
      retryDelay = RETRY_MIN_MS;
      opened = true;
      setConnection('connected');
    });

    for (const name of STREAM_EVENTS) {
      if (name === 'error') continue;
      es.addEventListener(name, (event) => {
        if (es === source) dispatch(name, event);
      });
    }

    // "error" is both the server's event name for a failed run (a MessageEvent with
    // data) and the EventSource's own connection-error event (a plain Event).
    es.addEventListener('error', (event) => {
      if (es !== source) return;
      if (typeof MessageEvent !== 'undefined' && event instanceof MessageEvent && typeof event.data === 'string') {
        dispatch('error', event);
        return;
      }
      if (es.readyState === EventSource.CLOSED) {
        setConnection('disconnected');
        scheduleReconnect();
      } else {
        setConnection('reconnecting');
      }
    });
  }

  // Come back at once when the network does, rather than waiting out the back-off.
  window.addEventListener('online', () => {
    if (!stopped && source && source.readyState === EventSource.CLOSED) {
      retryDelay = RETRY_MIN_MS;
      open();
    }
  });

  open();

  return {
    lastEventId: () => lastEventId,
    readyState: () => (source ? source.readyState : EventSource.CLOSED),
    close() {
      stopped = true;
      clearTimeout(retryTimer);
      if (source) source.close();
      setConnection('disconnected');
    },
  };
}
