// How the drawings' panels (the labelling offer, the gallery, Teach now) word counts,
// scores and refusals, and show a status line: one wording for the three of them.

import { ApiError } from './api.js';
import { formatInteger, formatPercent } from './format.js';

/** "1 drawing", "1,204 drawings". */
export const plural = (n, one, many = `${one}s`) => `${formatInteger(n)} ${n === 1 ? one : many}`;

/** A friendly sentence for a refused request, with the server's own message. */
export function describeFailure(error, what) {
  if (!(error instanceof ApiError)) return `Could not ${what}.`;
  if (error.status === 0) return `Could not ${what}: the server cannot be reached.`;
  if (error.status === 401) return `Could not ${what}: this server needs its token for that.`;
  return `Could not ${what}: ${error.message || `the server answered ${error.status}.`}`;
}

/** "3 of 4 (75%)", or "none held out" without any. */
export function describeScore(score) {
  if (!score || !Number.isInteger(score.total)) return '–';
  if (!score.total) return 'none held out';
  return `${formatInteger(score.correct)} of ${formatInteger(score.total)} (${formatPercent(score.correct / score.total, 0)})`;
}

/** A status line's text, marked as an error or not. */
export function showStatus(el, text, error = false) {
  el.textContent = text;
  el.classList.toggle('is-error', error);
}
