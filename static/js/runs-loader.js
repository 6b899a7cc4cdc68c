// The runs list as the server keeps it (GET /api/runs): asked for as the page opens, a
// moment after a run ends or a status says this page's picture is stale, and on
// reconnection. "A moment" is LIST_AFTER_MS plus up to SPREAD_MS; one request at a
// time (refresher.js).

import { api } from './api.js';
import { createRefresher } from './refresher.js';

const LIST_AFTER_MS = 800;
const SPREAD_MS = 1500;

/**
 * @param {object} options
 * @param {ReturnType<import('./jobs.js').createJobs>} options.jobs  the runs this page knows
 * @param {(list: object[], asked: number) => void} options.onLoaded  the list, and the
 *   stream's event count when it was asked for (jobs.applyList takes both)
 */
export function createRunsLoader({ jobs, onLoaded }) {
  return createRefresher(async () => {
    const asked = jobs.streamEvents();
    onLoaded(await api('GET', '/api/runs'), asked);
  }, { delayMs: LIST_AFTER_MS, spreadMs: SPREAD_MS, what: 'the runs' });
}
