// The run buttons: Start, Pause/Resume and Stop of the selected run, and the comparisons
// (several runs in one request, comparisons.js), with the requests behind them; and the
// panel they sit in, put together: the settings form (run-form.js), the preset chooser
// (presets.js) and what the selected run is doing (run-status.js). main.js hands it the
// selected run's status and events. Other modules follow the state through `subscribe`
// (steer.js). Start is always possible: past the runs that train at once, a new run
// waits in the queue. With a network of one's own in the builder (builder.js,
// `network`), Start trains it.

import { isUnavailable, setUnavailable } from './buttons.js';
import { createComparisons } from './comparisons.js';
import { api, ApiError } from './api.js';
import { createPresetChooser } from './presets.js';
import { createRunForm } from './run-form.js';
import { createRunStatus } from './run-status.js';

/**
 * @param {object} options
 * @param {object} options.elements  main.js hands them in: form, preset, optimizer, start,
 *   pause, stop, state, progress, progressText, formError, presetDescription, presetFixed,
 *   dataMissing, dataMissingMessage, error, errorMessage, storageError, compareFc,
 *   compareLr, compareHelp, race (the builder's "Race it against <preset>")
 * @param {ReturnType<import('./stats.js').createStats>} options.stats  the latest figures
 * @param {{specForRun: () => object | null}} [options.network]  the builder (run-form.js)
 */
export function createControls({ elements: el, stats, onStarted, onAnswer, network = null }) {
  const runForm = createRunForm({
    elements: { form: el.form, preset: el.preset, optimizer: el.optimizer, formError: el.formError },
    network,
  });
  const presets = createPresetChooser({
    elements: { preset: el.preset, optimizer: el.optimizer, description: el.presetDescription,
      fixed: el.presetFixed },
    runForm,
  });
  const runStatus = createRunStatus({
    elements: { state: el.state, progress: el.progress, progressText: el.progressText,
      dataMissing: el.dataMissing, dataMissingMessage: el.dataMissingMessage, error: el.error,
      errorMessage: el.errorMessage, storageError: el.storageError },
    stats,
  });
  let status = null;          // the latest status
  let busy = false;
  let streamStatuses = 0;     // status events from the stream so far
  const listeners = [];       // called with every status applied

  /** A status from an HTTP answer, asked for when the stream had sent `seen` statuses:
   *  applied only if the stream has said nothing newer since (a stop's answer can come
   *  after the stream's "finished"). main.js applies it to its runs (`onAnswer`). */
  function applyAnswer(answer, seen) {
    if (answer && typeof answer === 'object' && typeof answer.state === 'string' && streamStatuses === seen) {
      if (onAnswer) onAnswer(answer);
      else applyStatus(answer);
    }
  }

  /** The path of the run shown (its own id; `current` before there is one). */
  function runPath(action) {
    const id = status?.run_id;
    return `/api/runs/${id ? encodeURIComponent(id) : 'current'}/${action}`;
  }

  async function request(method, path, body) {
    busy = true;
    renderButtons();
    const seen = streamStatuses;
    try {
      const answer = await api(method, path, body);
      runForm.hideError();
      applyAnswer(answer, seen);
      return answer;
    } catch (error) {
      runForm.showError(error instanceof ApiError ? error.message : String(error.message || error));
      return null;
    } finally {
      busy = false;
      renderButtons();
    }
  }

  /** Start a run of the form's settings (and the builder's network, if one's own). */
  function start() {
    if (busy || isUnavailable(el.start)) return;
    let body;
    try {
      body = runForm.collect();
    } catch (error) {
      runForm.showError(error.message);
      return;
    }
    request('POST', '/api/runs', body).then((answer) => {
      if (answer && answer.run_id && onStarted) onStarted([answer.run_id], [answer]);
    });
  }

  el.form.addEventListener('submit', (event) => {
    event.preventDefault();
    start();
  });

  el.pause.addEventListener('click', () => {
    if (isUnavailable(el.pause)) return;
    const state = status?.state;
    if (state === 'running') request('POST', runPath('pause'));
    else if (state === 'paused') request('POST', runPath('resume'));
  });

  el.stop.addEventListener('click', () => {
    if (isUnavailable(el.stop)) return;
    request('POST', runPath('stop'));
  });

  const comparisons = createComparisons({
    fcButton: el.compareFc,
    lrButton: el.compareLr,
    raceButton: el.race,
    helpEl: el.compareHelp,
    form: el.form,
    field: runForm.field,
    collect: runForm.collect,
    presetRate: () => presets.config(presets.name())?.learning_rate,
    isBusy: () => busy,
    showFormError: runForm.showError,
    async start(runs) {
      const answer = await request('POST', '/api/comparisons', { runs });
      if (answer && Array.isArray(answer.run_ids) && onStarted) onStarted(answer.run_ids, answer.runs || []);
    },
  });

  function renderButtons() {
    const state = status?.state || 'idle';
    const controllable = state === 'running' || state === 'paused';
    setUnavailable(el.start, busy);
    comparisons.setBusy(busy);
    setUnavailable(el.pause, busy || !controllable);
    el.pause.textContent = state === 'paused' ? 'Resume' : 'Pause';
    el.pause.setAttribute('aria-pressed', state === 'paused' ? 'true' : 'false');
    setUnavailable(el.stop, busy || !controllable);
  }

  function applyStatus(s) {
    status = s;
    comparisons.setMaxAtOnce(s.max_concurrent_runs);
    runStatus.show(s);
    renderButtons();
    for (const listener of listeners) listener(s);
  }

  return {
    loadPresets: presets.load,
    start,
    /** The chosen preset's name, and any preset's network (null until known). */
    presetName: presets.name,
    presetSpec: presets.spec,
    /** Choose preset `name` as the person would (its settings fill the form). */
    choosePreset: presets.choose,
    /** The selected run's status, from a status event of the stream. */
    applyStatus(s) {
      streamStatuses += 1;
      applyStatus(s);
    },
    /** The selected run's status, from anything else (a selection, an answer, its end). */
    showStatus: (s) => applyStatus(s),
    /** A run is selected: forget the figures of the one shown before. */
    adoptRun: runStatus.adoptRun,
    /** `listener(status)` after every status applied, from the stream or an answer. */
    subscribe(listener) {
      listeners.push(listener);
    },
    /** How many statuses the stream has sent: give it back to applyAnswer. */
    statusesSeen: () => streamStatuses,
    applyAnswer,
    /** A run started (or its history is being replayed); `isNew`: its settings are shown
     *  in the form (a run started elsewhere, or the last one on load). */
    applyRun(run, { isNew }) {
      runStatus.run(run);
      if (isNew) presets.showRun(run);
    },
    applyBatch: runStatus.batch,
    applyEpoch: runStatus.epoch,
    applyDone: runStatus.done,
    showError: runStatus.showError,
    showStorageError: runStatus.showStorageError,
  };
}
