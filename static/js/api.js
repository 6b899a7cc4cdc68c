// JSON over fetch, with the server's error details turned into readable text.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
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

/** fetch + JSON; throws ApiError (status 0 when the server could not be reached). */
export async function api(method, path, body) {
  const init = { method, headers: { Accept: 'application/json' }, cache: 'no-store' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'Cannot reach the server.');
  }
  const text = await response.text();
  let payload = null;
  if (text) {
    try {
      payload = JSON.parse(text);
    } catch {
      payload = text;
    }
  }
  if (!response.ok) throw new ApiError(response.status, describeError(payload, response.status, response.statusText));
  return payload;
}
