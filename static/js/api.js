// JSON over fetch, with the server's error details turned into readable text, and the
// server's token (CNN_LIVE_TOKEN): kept in sessionStorage, sent as `Authorization: Bearer`
// on every call, and asked for (through `setTokenAsker`) when the server answers 401;
// the call is then sent again with it.

const TOKEN_KEY = 'cnn-live-token';
let asker = null;          // async (message) => token, or null when the user gives up
let pendingAsk = null;     // one question at a time, shared by the calls that need it

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

function setToken(token) {
  try {
    sessionStorage.setItem(TOKEN_KEY, token);
  } catch {
    // storage refused (private mode): the token lasts as long as the question did
  }
}

/** `ask(message)` shows the question and resolves to the token, or null. */
export function setTokenAsker(ask) {
  asker = ask;
}

/** Asks for the token (once, however many calls wait for it); resolves to it, or ''. */
export function askForToken(wrong = false) {
  if (!asker) return Promise.resolve('');
  if (!pendingAsk) {
    const message = wrong
      ? 'That token was not accepted. Check it and enter it again.'
      : 'This server needs a token for this. Enter the token it was started with (CNN_LIVE_TOKEN).';
    pendingAsk = Promise.resolve(asker(message)).then((token) => {
      pendingAsk = null;
      const given = (token || '').trim();
      if (given) setToken(given);
      return given;
    }, () => {
      pendingAsk = null;
      return '';
    });
  }
  return pendingAsk;
}

export class ApiError extends Error {
  /** `payload`: the answer's body as sent (a 422 of POST /api/specs/check names the layer). */
  constructor(status, message, payload = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.payload = payload;
  }
}

/** Readable text for a FastAPI error body: {"detail": "..."} or {"detail": [{loc, msg}, ...]}. */
export function describeError(payload, status = 0, statusText = '') {
  const detail = payload && typeof payload === 'object' && !Array.isArray(payload) && 'detail' in payload
    ? payload.detail : payload;
  if (typeof detail === 'string' && detail.trim()) return detail.trim();
  if (Array.isArray(detail) && detail.length) {
    return detail.map((item) => {
      if (typeof item === 'string') return item;
      if (!item || typeof item !== 'object') return String(item);
      const where = (Array.isArray(item.loc) ? item.loc : [])
        .filter((part) => part !== 'body' && part !== 'query' && part !== 'path');
      const message = item.msg || item.message || JSON.stringify(item);
      return where.length ? `${where.join('.')}: ${message}` : message;
    }).join('\n');
  }
  if (detail && typeof detail === 'object') return JSON.stringify(detail);
  return status ? `The server answered ${status}${statusText ? ` ${statusText}` : ''}.` : 'Request failed.';
}

/** fetch + JSON; throws ApiError (status 0 when the server could not be reached). A 401
 *  asks for the token and sends the call again, until it passes or the user gives up.
 *  A Blob `body` is sent as it is (application/octet-stream: a file to import); with
 *  `{blob: true}` the answer comes back as a Blob (a file to download). */
export async function api(method, path, body, { blob = false } = {}) {
  for (;;) {
    const sent = getToken();
    const response = await send(method, path, body, sent);
    if (response.status !== 401 || !asker) return read(response, blob);
    if (getToken() !== sent) continue;  // another call got a new token meanwhile
    if (!(await askForToken(Boolean(sent)))) return read(response, blob);
  }
}

async function send(method, path, body, token) {
  const init = { method, headers: { Accept: 'application/json' }, cache: 'no-store' };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body instanceof Blob) {
    init.headers['Content-Type'] = 'application/octet-stream';
    init.body = body;
  } else if (body !== undefined || changesState(method)) {
    // The server refuses a state change without this type (a form or another site's
    // page cannot send it), so a call without a body sends {}.
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body ?? {});
  }
  try {
    return await fetch(path, init);
  } catch {
    throw new ApiError(0, 'Cannot reach the server.');
  }
}

function changesState(method) {
  return !['GET', 'HEAD', 'OPTIONS'].includes(method.toUpperCase());
}

async function read(response, blob = false) {
  if (blob && response.ok) return response.blob();
  const text = await response.text();
  let payload = null;
  if (text) {
    try {
      payload = JSON.parse(text);
    } catch {
      payload = text;
    }
  }
  if (!response.ok) {
    throw new ApiError(response.status, describeError(payload, response.status, response.statusText), payload);
  }
  return payload;
}
