// The training form, the API calls behind its buttons, and everything that shows the
// selected run's state (main.js hands it that run's status): the state badge, the
// buttons' enabled state, the progress bar and text, the latest figures, and the
// data-missing and error banners. Other modules follow the state through `subscribe`
// (steer.js). Start is always possible: past the runs that train at once, a new run
// waits in the queue. The comparison buttons start several runs in one request. With a
// network of one's own in the builder (builder.js, `network`), Start trains it.

import { PAGE_EVENTS } from './events.js';
import { isUnavailable, setUnavailable } from './buttons.js';
import { createComparisons } from './comparisons.js';
import { api, ApiError } from './api.js';
import { formatDuration, formatInteger, pacedTask } from './format.js';

// How often the progress text follows the batches (ms).
export const TEXT_INTERVAL_MS = 500;

const STATES = ['idle', 'queued', 'running', 'paused', 'stopping', 'finished', 'failed', 'interrupted'];

// The run form's number fields: [body key, which is the input's name, label for messages].
const NUMBER_FIELDS = [
  ['epochs', 'Epochs'],
  ['batch_size', 'Batch size'],
  ['learning_rate', 'Learning rate'],
  ['seed', 'Seed'],
  ['augment_shift', 'Shift'],
  ['augment_scale', 'Scale'],
  ['augment_rotation', 'Rotation'],
  ['augment_stroke', 'Stroke'],
];


/** A data-* attribute's JSON, or null. */
function parseData(text) {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

function describeFixed(c) {
  if (!c) return '';
  const train = c.train_size ? `${formatInteger(c.train_size)} training` : 'all 60,000 training';
  const test = c.test_size ? `${formatInteger(c.test_size)} test images` : 'all 10,000 test images';
  const parts = [`${train} / ${test}`];
  if (c.lr_decay != null && c.lr_decay !== 1) parts.push(`learning rate ×${c.lr_decay} per epoch`);
  if (c.optimizer === 'sgd' && c.momentum) parts.push(`momentum ${c.momentum}`);
  if (c.shuffle === false) parts.push('not shuffled');
  return parts.join(' · ');
}

/**
 * @param {object} options
 * @param {object} options.elements  main.js hands them in: form, preset, optimizer, start,
 *   pause, stop, state, progress, progressText, formError, presetDescription, presetFixed,
 *   dataMissing, dataMissingMessage, error, errorMessage, storageError, compareFc,
 *   compareLr, compareHelp, race (the builder's "Race it against <preset>")
 * @param {ReturnType<import('./stats.js').createStats>} options.stats  the latest figures
 * @param {{specForRun: () => object | null}} [options.network]  the builder: the spec to
 *   train instead of the preset's network (null: the preset's); throws, with the message
 *   to show, for a network that cannot train
 */
export function createControls({ elements: el, stats, onStarted, onAnswer, network = null }) {

  const presets = new Map();  // name -> {name, description, spec, config}
  let status = null;          // the latest status
  let runId = null;           // the run the progress belongs to
  let progress = null;        // {epoch, epochs, step, steps, progress, eta}
  let outcome = null;         // the latest "done" event of this run
  let busy = false;
  let streamStatuses = 0;     // status events from the stream so far
  const listeners = [];       // called with every status applied
  const field = (name) => el.form.elements.namedItem(name);
  const numberInputs = NUMBER_FIELDS.map(([key, label]) => [key, field(key), label])
    .filter(([, input]) => input);

  // ----- presets -----
  function readPresetsFromPage() {
    for (const option of el.preset.options) {
      presets.set(option.value, {
        name: option.value, description: option.dataset.description || '',
        config: parseData(option.dataset.config), spec: parseData(option.dataset.spec),
      });
    }
  }

  function setPresets(list) {
    const chosen = el.preset.value || 'default';
    el.preset.replaceChildren();
    presets.clear();
    for (const preset of list) {
      presets.set(preset.name, preset);
      const option = document.createElement('option');
      option.value = preset.name;
      option.textContent = preset.name;
      el.preset.append(option);
    }
    if (presets.has(chosen)) el.preset.value = chosen;
    else if (presets.has('default')) el.preset.value = 'default';
  }

  function fillForm(config) {
    if (!config) return;
    for (const [key, input] of numberInputs) {
      if (config[key] != null) input.value = String(config[key]);
    }
    if (config.optimizer) el.optimizer.value = config.optimizer;
    // Tell the augmentation preview (augment.js) that its fields changed.
    el.form.dispatchEvent(new CustomEvent(PAGE_EVENTS.formFilled));
  }

  function showPreset(name, { fill = true, config = null } = {}) {
    const preset = presets.get(name);
    el.presetDescription.textContent = preset ? preset.description : '';
    el.presetFixed.textContent = describeFixed(config || preset?.config);
    if (fill && preset) fillForm(preset.config);
  }

  // Once the user has edited the form, a run's settings no longer overwrite it.
  let edited = false;
  let filledFromRun = false;
  el.form.addEventListener('input', () => { edited = true; });
  el.form.addEventListener('change', () => { edited = true; });

  el.preset.addEventListener('change', () => {
    hideFormError();
    showPreset(el.preset.value);
  });
  el.optimizer.addEventListener('change', () => {
    const preset = presets.get(el.preset.value);
    if (preset?.config) {
      el.presetFixed.textContent = describeFixed({ ...preset.config, optimizer: el.optimizer.value });
    }
  });

  async function loadPresets() {
    readPresetsFromPage();
    if (presets.size && [...presets.values()].every((p) => p.config && p.spec)) {
      showPreset(el.preset.value);
      return;
    }
    try {
      setPresets(await api('GET', '/api/presets'));
      // Late: keep what a run's settings or the user put in the form meanwhile.
      showPreset(el.preset.value, { fill: !edited && !filledFromRun });
    } catch (error) {
      showFormError(`Could not load the presets: ${error.message}`);
    }
  }

  // ----- the form -----
  function showFormError(text) {
    el.formError.textContent = text;
    el.formError.hidden = false;
  }

  function hideFormError() {
    el.formError.hidden = true;
    el.formError.textContent = '';
  }

  function collect() {
    const body = { preset: el.preset.value };
    for (const [key, input, label] of numberInputs) {
      const text = input.value.trim();
      if (text === '') {
        if (input.validity && input.validity.badInput) throw new Error(`${label} must be a number.`);
        continue;
      }
      const value = Number(text);
      if (!Number.isFinite(value)) throw new Error(`${label} must be a number.`);
      body[key] = value;
    }
    if (el.optimizer.value) body.optimizer = el.optimizer.value;
    const spec = network ? network.specForRun() : null;
    if (spec) body.spec = spec;
    return body;
  }

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
      hideFormError();
      applyAnswer(answer, seen);
      return answer;
    } catch (error) {
      showFormError(error instanceof ApiError ? error.message : String(error.message || error));
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
      body = collect();
    } catch (error) {
      showFormError(error.message);
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

  // ----- comparisons: several runs in one request (comparisons.js) -----
  const comparisons = createComparisons({
    fcButton: el.compareFc,
    lrButton: el.compareLr,
    raceButton: el.race,
    helpEl: el.compareHelp,
    form: el.form,
    field,
    collect,
    presetRate: () => presets.get(el.preset.value)?.config?.learning_rate,
    isBusy: () => busy,
    showFormError,
    async start(runs) {
      const answer = await request('POST', '/api/comparisons', { runs });
      if (answer && Array.isArray(answer.run_ids) && onStarted) onStarted(answer.run_ids, answer.runs || []);
    },
  });
  const describeComparisons = () => comparisons.describe();

  // ----- state, buttons, progress -----
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
    const fraction = Number.isFinite(p.progress) ? Math.min(1, Math.max(0, p.progress)) : 0;
    el.progress.value = fraction;
    if (state === 'queued') {
      const position = status?.queue_position;
      el.progressText.textContent = `queued${Number.isFinite(position) ? ` · number ${position} in the queue` : ''}`
        + ' · it starts when a run ends';
      return;
    }
    let text = `epoch ${p.epoch ?? 0}/${p.epochs ?? '?'} · step ${p.step ?? 0}/${p.steps ?? '?'}`;
    if (state === 'running' && !p.steps) {
      text += ' · starting…';
    } else if (state === 'running') {
      text += ` · ETA ${formatDuration(p.eta)}`;
    } else if (state === 'paused') {
      text += ' · paused';
    } else if (state === 'stopping') {
      text += ' · stopping…';
    } else if (state === 'failed') {
      text += ' · failed';
    } else if (state === 'interrupted') {
      text += ' · interrupted';
    } else if (outcome && outcome.state === 'stopped') {
      text += ` · stopped after ${outcome.epochs_completed ?? 0} epoch${outcome.epochs_completed === 1 ? '' : 's'}`;
    } else if (state === 'finished' || outcome) {
      const seconds = outcome?.seconds ?? status?.elapsed_seconds;
      text += ` · done in ${formatDuration(seconds)}`;
    }
    el.progressText.textContent = text;
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

  /** What the server could not save for this run ('' hides the line). */
  function showStorageError(message) {
    if (!el.storageError) return;
    el.storageError.textContent = message ? `Not saved: ${message}` : '';
    el.storageError.hidden = !message;
  }

  function hideError() {
    el.error.hidden = true;
    el.errorMessage.textContent = '';
  }

  function adoptRun(id) {
    if (id && id !== runId) {
      runId = id;
      progress = {};
      outcome = null;
      stats.reset();
      showStorageError('');
    }
  }

  function applyStatus(s) {
    status = s;
    comparisons.setMaxAtOnce(s.max_concurrent_runs);
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
    renderButtons();
    renderProgress();
    renderBanners();
    for (const listener of listeners) listener(s);
  }

  /** GET /api/status, for a first picture before the stream has said anything. */
  async function loadStatus() {
    const seen = streamStatuses;
    try {
      applyAnswer(await api('GET', '/api/status'), seen);
    } catch (error) {
      console.warn('cnn-live: could not load the status', error);
    }
  }

  return {
    loadPresets,
    loadStatus,
    start,
    /** The chosen preset's name, and any preset's network (null until known). */
    presetName: () => el.preset.value,
    presetSpec: (name) => presets.get(name)?.spec || null,
    /** Choose preset `name` as the person would (its settings fill the form). */
    choosePreset(name) {
      if (!presets.has(name) || el.preset.value === name) return;
      el.preset.value = name;
      hideFormError();
      showPreset(name);
    },
    /** The selected run's status, from a status event of the stream. */
    applyStatus(s) {
      streamStatuses += 1;
      applyStatus(s);
    },
    /** The selected run's status, from anything else (a selection, an answer, its end). */
    showStatus: (s) => applyStatus(s),
    /** A run is selected: forget the figures of the one shown before. */
    adoptRun,
    describeComparisons,
    status: () => status,
    /** `listener(status)` after every status applied, from the stream or an answer. */
    subscribe(listener) {
      listeners.push(listener);
    },
    /** How many statuses the stream has sent: give it back to applyAnswer. */
    statusesSeen: () => streamStatuses,
    applyAnswer,
    /** A run started (or its history is being replayed). */
    applyRun(run, { isNew }) {
      adoptRun(run.run_id);
      hideError();
      showStorageError('');
      if (run.config && Number.isFinite(run.config.epochs)) {
        progress = { ...progress, epochs: run.config.epochs };
      }
      if (isNew && !edited) {
        // Show the run's settings (a run started elsewhere, or the last one on load).
        if (run.preset && presets.has(run.preset)) el.preset.value = run.preset;
        showPreset(el.preset.value, { fill: false, config: run.config });
        fillForm(run.config);
        filledFromRun = true;
      }
      renderProgress();
    },
    applyBatch(b) {
      adoptRun(b.run_id);
      progress = {
        ...progress,
        epoch: b.epoch, step: b.step, steps: b.steps, progress: b.progress,
        eta: b.eta_seconds,
      };
      stats.batch(b);
      renderProgressSoon();
    },
    applyEpoch(e) {
      adoptRun(e.run_id);
      if (Number.isFinite(e.epochs)) progress = { ...progress, epochs: e.epochs };
      stats.epoch(e);
      renderProgress();
    },
    applyDone(d) {
      adoptRun(d.run_id);
      outcome = d;
      renderProgress();
    },
    showError,
    showStorageError,
  };
}
