// What the selected run is doing, shown above the charts: the state badge, the progress
// bar and its text, the latest figures (stats.js), the data-missing banner, the
// failed-run banner and the line for what the server could not save. It only shows:
// main.js (through controls.js) says which run and hands it its statuses and events.

import { formatDuration, pacedTask } from './format.js';

// How often the progress text follows the batches (ms).
const TEXT_INTERVAL_MS = 500;

const STATES = ['idle', 'queued', 'running', 'paused', 'stopping', 'finished', 'failed', 'interrupted'];

/** The progress text after "epoch 2/5 · step 10/469": what the run is doing, with its
 *  ETA while it runs and its time once done (its outcome's, else `elapsed`). */
function progressSuffix(state, { eta, elapsed }, outcome) {
  if (state === 'running') return ` · ETA ${formatDuration(eta)}`;
  if (state === 'paused') return ' · paused';
  if (state === 'stopping') return ' · stopping…';
  if (state === 'failed') return ' · failed';
  if (state === 'interrupted') return ' · interrupted';
  if (outcome && outcome.state === 'stopped') {
    return ` · stopped after ${outcome.epochs_completed ?? 0} epoch${outcome.epochs_completed === 1 ? '' : 's'}`;
  }
  if (state === 'finished' || outcome) return ` · done in ${formatDuration(outcome?.seconds ?? elapsed)}`;
  return '';
}

/**
 * @param {object} options
 * @param {object} options.elements  state, progress, progressText, dataMissing,
 *   dataMissingMessage, error, errorMessage, storageError
 * @param {ReturnType<import('./stats.js').createStats>} options.stats  the latest figures
 */
export function createRunStatus({ elements: el, stats }) {
  let status = null;          // the latest status
  let runId = null;           // the run the progress belongs to
  let progress = null;        // {epoch, epochs, step, steps, progress, eta}
  let outcome = null;         // the latest "done" event of this run

  function renderState() {
    const state = status?.state || 'idle';
    el.state.textContent = state;
    for (const s of STATES) el.state.classList.toggle(`state-${s}`, s === state);
    document.body.dataset.state = state;
  }

  function renderProgress() {
    const state = status?.state || 'idle';
    const p = progress;
    if (!p || !runId) {
      el.progress.value = 0;
      el.progressText.textContent = 'No run yet: choose a preset and press Start.';
      return;
    }
    el.progress.value = Number.isFinite(p.progress) ? Math.min(1, Math.max(0, p.progress)) : 0;
    if (state === 'queued') {
      const position = status?.queue_position;
      el.progressText.textContent = `queued${Number.isFinite(position) ? ` · number ${position} in the queue` : ''}`
        + ' · it starts when a run ends';
      return;
    }
    const text = `epoch ${p.epoch ?? 0}/${p.epochs ?? '?'} · step ${p.step ?? 0}/${p.steps ?? '?'}`;
    const suffix = state === 'running' && !p.steps ? ' · starting…'
      : progressSuffix(state, { eta: p.eta, elapsed: status?.elapsed_seconds }, outcome);
    el.progressText.textContent = text + suffix;
  }

  // Batches come about 10 times a second (thousands at once in a replayed history): the
  // text follows twice a second. Redrawing it every frame was, with the figures, 20
  // layouts and paints a second on a slow phone.
  const renderProgressSoon = pacedTask(renderProgress, { interval: TEXT_INTERVAL_MS });

  function renderBanners() {
    const data = status?.data;
    if (data && data.available === false) {
      el.dataMissingMessage.textContent = data.message
        || `No MNIST files in ${data.directory || 'the data directory'}.`;
      el.dataMissing.hidden = false;
    } else {
      el.dataMissing.hidden = true;
    }
  }

  function showError(message) {
    el.errorMessage.textContent = message || 'The run stopped with an error.';
    el.error.hidden = false;
  }

  function hideError() {
    el.error.hidden = true;
    el.errorMessage.textContent = '';
  }

  /** What the server could not save for this run ('' hides the line). */
  function showStorageError(message) {
    if (!el.storageError) return;
    el.storageError.textContent = message ? `Not saved: ${message}` : '';
    el.storageError.hidden = !message;
  }

  /** Run `id` is shown: forget the figures of the one shown before. */
  function adoptRun(id) {
    if (id && id !== runId) {
      runId = id;
      progress = {};
      outcome = null;
      stats.reset();
      showStorageError('');
    }
  }

  return {
    adoptRun,
    showError,
    showStorageError,
    /** The selected run's status (the server's shape). */
    show(s) {
      status = s;
      if (s.run_id) {
        adoptRun(s.run_id);
        progress = {
          ...progress,
          epoch: s.epoch, epochs: s.epochs, step: s.step, steps: s.steps,
          progress: s.progress, eta: s.eta_seconds,
        };
        stats.elapsed(s.elapsed_seconds);
      }
      if (s.state === 'failed') showError(s.message);
      else hideError();
      renderState();
      renderProgress();
      renderBanners();
    },
    /** A run started (or its history is being replayed). */
    run(run) {
      adoptRun(run.run_id);
      hideError();
      showStorageError('');
      if (run.config && Number.isFinite(run.config.epochs)) {
        progress = { ...progress, epochs: run.config.epochs };
      }
      renderProgress();
    },
    batch(b) {
      adoptRun(b.run_id);
      progress = {
        ...progress,
        epoch: b.epoch, step: b.step, steps: b.steps, progress: b.progress,
        eta: b.eta_seconds,
      };
      stats.batch(b);
      renderProgressSoon();
    },
    epoch(e) {
      adoptRun(e.run_id);
      if (Number.isFinite(e.epochs)) progress = { ...progress, epochs: e.epochs };
      stats.epoch(e);
      renderProgress();
    },
    done(d) {
      adoptRun(d.run_id);
      outcome = d;
      renderProgress();
    },
  };
}
