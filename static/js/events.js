// Every event name of the page, defined once.

/** The server's stream (GET /api/events): one handler each in main.js. */
export const STREAM_EVENTS = Object.freeze(['run', 'status', 'batch', 'batches', 'epoch', 'filters',
  'evaluation', 'histograms', 'hyperparameters', 'done', 'error', 'storage_error', 'cancelled']);

/** Stream events whose newest one is the whole picture, so a newer one of the same kind
 *  makes an older one still waiting worthless: the server's status (one for the server),
 *  and each run's filters, evaluation and histograms (one per run). The server's history
 *  keeps only the newest of these (app/hub.py LATEST_ONLY). */
export const WHOLE_PICTURES = Object.freeze({ server: ['status'], perRun: ['filters', 'evaluation', 'histograms'] });

/** Events between the page's own modules (DOM CustomEvents). */
export const PAGE_EVENTS = Object.freeze({
  // The run form's fields were filled in by code (a preset, a run's settings): on the form.
  formFilled: 'cnn-live-filled',
  // A section was shown (a phone shows one at a time): on the document.
  sectionShown: 'cnn-live-section-shown',
  // The theme changed (the toggle, or the system's setting): on the document.
  themeChanged: 'cnn-live-theme',
});
