// Asking the server for a list again, politely: one request at a time (asked again
// while one is on its way, it asks once more when that one is back), and "in a moment"
// is a delay plus up to `spreadMs` at random, so that a room of browsers does not ask
// at the same instant. The runs list (runs-loader.js) and the drawing pad's model
// chooser (chooser.js) both refresh this way.

/**
 * @param {() => Promise<void>} load  one request and what is done with its answer
 * @param {object} options
 * @param {number} options.delayMs  the least wait of refreshSoon
 * @param {number} options.spreadMs  the most added at random
 * @param {string} options.what  named in the console when a request fails
 */
export function createRefresher(load, { delayMs, spreadMs, what }) {
  let loading = null;
  let again = false;
  let timer = 0;

  /** Ask now (or once more after the request on its way). */
  function refresh() {
    if (loading) {
      again = true;
      return loading;
    }
    loading = (async () => {
      try {
        do {
          again = false;
          await load();
        } while (again);
      } catch (error) {
        console.warn(`cnn-live: could not load ${what}`, error);
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
    }, delayMs + Math.random() * spreadMs);
  }

  return { refresh, refreshSoon };
}
