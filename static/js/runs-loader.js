// The runs list as the server keeps it (GET /api/runs): asked for as the page opens, a
// moment after a run ends or a status says this page's picture is stale, and on
// reconnection. "A moment" is LIST_AFTER_MS plus up to SPREAD_MS, so that a room of
// browsers does not ask at the same instant. One request at a time: asked again while
// one is on its way, it asks once more when that one is back.

import { api } from './api.js';

const LIST_AFTER_MS = 800;
const SPREAD_MS = 1500;

/**
 * @param {object} options
 * @param {ReturnType<import('./jobs.js').createJobs>} options.jobs  the runs this page knows
 * @param {(list: object[], asked: number) => void} options.onLoaded  the list, and the
 *   stream's event count when it was asked for (jobs.applyList takes both)
 */
export function createRunsLoader({ jobs, onLoaded }) {
  let loading = null;
  let again = false;
  let timer = 0;

  /** Ask now (or once more after the request on its way). */
  async function refresh() {
    if (loading) {
      again = true;
      return loading;
    }
    loading = (async () => {
      try {
        do {
          again = false;
          const asked = jobs.streamEvents();
          onLoaded(await api('GET', '/api/runs'), asked);
        } while (again);
      } catch (error) {
        console.warn('cnn-live: could not load the runs', error);
      } finally {
        loading = null;
      }
    })();
    return loading;
  }

  /** Ask in a moment (once, however often this is called meanwhile). */
  function refreshSoon() {
    if (timer) return;
    timer = setTimeout(() => {
      timer = 0;
      refresh();
    }, LIST_AFTER_MS + Math.random() * SPREAD_MS);
  }

  return { refresh, refreshSoon };
}
