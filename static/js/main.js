// Wiring: the event stream feeds the runs (jobs.js), the charts, the runs list, the
// filters, the insight panels, the controls and the drawing pad's chooser.
//
// Several runs train at once (issue 12): which one the panels follow and which the
// charts draw is selection.js's. A page that opens selects the oldest run in training (a
// comparison's first); starting runs from this page selects the first of them.
//
// Events are applied in the order they come. A "run" event clears that run's curves
// and panels, so a page that connects mid-run (and is sent the active runs' history
// first) ends up drawing exactly what a page that watched from the start draws.
//
// Per event the work stays small (a room of browsers watches): a batch appends a point
// and asks for a redraw on the next frame; the runs list is patched per row, from the
// status (about once a second) and the runs' epochs, never from batches.

import { createCharts } from './charts.js';
import { createControls } from './controls.js';
import { createStats } from './stats.js';
import { createDraw } from './draw.js';
import { createDrawings } from './drawings.js';
import { createFilters } from './filters.js';
import { createInsight } from './insight.js';
import { createRuns } from './runs.js';
import { ACTIVE, createJobs, runName } from './jobs.js';
import { createModelChooser } from './chooser.js';
import { connectStream } from './stream.js';
import { STREAM_EVENTS } from './events.js';
import { api, askForToken, getToken, setTokenAsker } from './api.js';
import { createTokenDialog } from './token.js';
import { createThemeToggle, onThemeChange } from './theme.js';
import { createSteer } from './steer.js';
import { createAugmentPreview } from './augment.js';
import { createChartDownloads } from './export.js';
import { cssVar } from './format.js';
import { createSections } from './sections.js';
import { createBuilder } from './builder.js';
import { createSelection } from './selection.js';
import { createRunsLoader } from './runs-loader.js';

const byId = (id) => document.getElementById(id);
// Setting the panels up is a few hundred ms on a slow phone: in four tasks, not one
// long one (the page answers input between them; nothing calls a panel before it exists,
// since the stream's events are held until they all do).
const nextTask = () => new Promise((resolve) => { setTimeout(resolve, 0); });

// The server's token, asked for when a request gets 401 (see api.js).
setTokenAsker(createTokenDialog({
  dialog: byId('token-dialog'),
  form: byId('token-form'),
  input: byId('token-input'),
  message: byId('token-message'),
  cancel: byId('token-cancel'),
}));

// Which requests need a token (GET /api/auth, always open): asked now, while the panels
// are set up, rather than after them (a round trip less before the stream opens).
const authAsked = api('GET', '/api/auth');
authAsked.catch(() => {});   // read below
// With CNN_LIVE_TOKEN_READ even watching needs the token (known once /api/auth answers):
// the event stream is then given it as ?token= (as EventSource needed; the fetch keeps it).
// Until it answers, a token this tab already holds is sent (a server that needs it is
// not refused once first).
let auth = null;
// A replayed history's batch events come as one "batches" event per run (parsed and
// drawn in one pass); live ones one by one.
function eventsUrl() {
  const token = !auth || auth.read ? getToken() : '';
  return `/api/events?group_batches=true${token ? `&token=${encodeURIComponent(token)}` : ''}`;
}

// The event stream and the server's status, asked for now, before the panels are set up:
// on a slow phone that setup is half a second, and a late page's replayed history comes
// meanwhile. The stream is held (received, not applied) until the panels exist and the
// runs list is applied, so that runs get their colours in the server's order. A server
// that wants a token for reading refuses this first try; the stream asks again, with it.
const firstStatus = api('GET', '/api/status').catch((error) => {
  console.warn('cnn-live: could not load the status', error);
  return null;
});
let connectedOnce = false;
let panelsReady = false;
let connection = 'disconnected';   // shown once the panels are ready (the page is live)
const connectionEl = byId('connection');
const stream = connectStream({
  url: eventsUrl,
  held: true,
  onEvent: (name, data) => {
    const handler = handlers[name];
    if (!handler || !data || typeof data !== 'object') return;
    jobs.streamEvent();
    handler(data);
  },
  onConnection: (state) => {
    connection = state;
    if (panelsReady) showConnection(state);
    if (state === 'connected') {
      if (connectedOnce && panelsReady) refreshListSoon();   // what was missed meanwhile
      connectedOnce = true;
    }
  },
});

function showConnection(state) {
  const text = { connected: 'connected', reconnecting: 'reconnecting…', disconnected: 'disconnected' }[state];
  if (!text) return;
  connectionEl.textContent = text;
  connectionEl.classList.remove('connected', 'reconnecting', 'disconnected');
  connectionEl.classList.add(state);
}

// The four sections (Train, Draw, Evaluate, Runs): one at a time on a phone.
const sections = createSections({
  layout: byId('main'),
  links: document.querySelectorAll('a[data-section-link]'),
});

const jobs = createJobs();
let lastStatus = null;    // the server's latest status (from the stream or GET /api/status)

const nameOf = (id) => {
  const job = jobs.get(id);
  return job ? runName(job) : `run ${String(id).slice(0, 4)}`;
};

// Started from this page (Start, or a comparison): follow the first run at once, even
// before its "run" event.
const stats = createStats({
  testEl: byId('stat-test-accuracy'),
  testNoteEl: byId('stat-test-note'),
  lossEl: byId('stat-loss'),
  speedEl: byId('stat-speed'),
  lrEl: byId('stat-lr'),
  elapsedEl: byId('stat-elapsed'),
});
const controls = createControls({
  elements: {
    form: byId('run-form'),
    preset: byId('preset'),
    optimizer: byId('optimizer'),
    start: byId('start'),
    pause: byId('pause'),
    stop: byId('stop'),
    state: byId('state'),
    progress: byId('progress'),
    progressText: byId('progress-text'),
    formError: byId('form-error'),
    presetDescription: byId('preset-description'),
    presetFixed: byId('preset-fixed'),
    dataMissing: byId('data-missing'),
    dataMissingMessage: byId('data-missing-message'),
    error: byId('error'),
    errorMessage: byId('error-message'),
    storageError: byId('storage-error'),
    compareFc: byId('compare-fc'),
    compareLr: byId('compare-lr'),
    compareHelp: byId('compare-help'),
    race: byId('builder-race'),
  },
  stats,
  network: { specForRun: () => builder.specForRun() },
  onStarted: (ids, statuses) => {
    for (const status of statuses) {
      const job = jobs.applyRunStatus(status, { fromStream: false });
      if (job) runsView.update(job);
    }
    if (ids.length) select(ids[0]);
  },
  onAnswer: (answer) => applyAnswer(answer),
});

// "Build your own network": Start (and "Race it") train the network it holds.
const builder = createBuilder({
  details: byId('builder'),
  elements: {
    summary: byId('builder-title'),
    badge: byId('builder-badge'),
    list: byId('builder-layers'),
    inputShape: byId('builder-input-shape'),
    totalParameters: byId('builder-total-parameters'),
    totalMultiplyAdds: byId('builder-total-multiply-adds'),
    status: byId('builder-status'),
    limits: byId('builder-limits'),
    addType: byId('builder-add-type'),
    addAt: byId('builder-add-at'),
    addButton: byId('builder-add'),
    loss: byId('builder-loss'),
    init: byId('builder-init'),
    optimizer: byId('builder-optimizer'),
    start: byId('builder-start'),
    reset: byId('builder-reset'),
    json: byId('builder-json'),
    jsonError: byId('builder-json-error'),
  },
  form: byId('run-form'),
  presetName: () => controls.presetName(),
  presetSpec: (name) => controls.presetSpec(name),
  start: () => controls.start(),
});
/** A run trains a network of its own, not its preset's. */
const ownNetwork = (job) => builder.isOwnNetwork(job.spec, job.preset);

const legend = new Map(); // run id -> its name in the charts' legend (selection.js fills it)
await nextTask();
const charts = createCharts({
  lossEl: byId('loss-chart'),
  accuracyEl: byId('accuracy-chart'),
  smoothingInput: byId('smoothing'),
  smoothingOutput: byId('smoothing-value'),
  logInput: byId('loss-log'),
  onLossSmoothed: (value) => stats.loss(value),
  describe: (id) => {
    const job = jobs.get(id);
    return {
      label: legend.get(id) || nameOf(id),
      colour: cssVar(`--run-colour-${job ? job.colour : 0}`, '#2563eb'),
    };
  },
});

await nextTask();
const filters = createFilters({ container: byId('filters'), stampEl: byId('filters-stamp') });

// The evaluation (confusion matrix, mistakes) and the weight histograms of each epoch.
const insight = createInsight({
  evaluateElements: {
    matrixEl: byId('confusion'),
    stampEl: byId('evaluate-stamp'),
    summaryEl: byId('confusion-summary'),
    detailEl: byId('confusion-detail'),
    detailTitleEl: byId('confusion-detail-title'),
    detailGridEl: byId('confusion-images'),
    galleryEl: byId('mistakes'),
    galleryCountEl: byId('mistakes-count'),
    tabs: { test: byId('confusion-tab-test'), drawings: byId('confusion-tab-drawings') },
  },
  histogramElements: { container: byId('histograms'), stampEl: byId('histograms-stamp') },
});

// The drawing pad, the model that answers it, and the network's reading of it.
const chooser = createModelChooser({
  select: byId('draw-model'),
  nameOf,
  onChange: () => draw.askAgain(),
});
const draw = createDraw({
  canvas: byId('draw-canvas'),
  clearButton: byId('draw-clear'),
  penInput: byId('pen-width'),
  penOutput: byId('pen-width-value'),
  predictionEl: byId('prediction'),
  modelEl: byId('prediction-model'),
  probabilitiesEl: byId('probabilities'),
  inputCanvas: byId('network-input'),
  mapsEl: byId('feature-maps'),
  errorEl: byId('draw-error'),
  rawWeightsInput: byId('draw-raw-weights'),
  chooser,
  nameOf,
  onAnswer: (answer) => drawings.answered(answer),
  onClear: () => drawings.cleared(),
});
// Labelling the pad's drawings, their gallery and Teach now (issue 15); the teaching
// run is followed like a run started here.
const drawings = createDrawings({
  offer: {
    el: byId('label-offer'),
    right: byId('label-right'),
    digit: byId('label-right-digit'),
    status: byId('label-status'),
  },
  gallery: {
    details: byId('drawings'),
    count: byId('drawings-count'),
    counts: byId('drawings-counts'),
    grid: byId('drawings-gallery'),
    status: byId('drawings-status'),
    exports: [byId('drawings-export-npz'), byId('drawings-export-idx')],
    importInput: byId('drawings-import'),
  },
  teach: { button: byId('teach-now'), note: byId('teach-note'), result: byId('teach-result') },
  draw,
  onTaught: (id) => select(id),
  onBefore: (record) => charts.addEpoch(record),
  nameOf,
});

await nextTask();
const runsView = createRuns({
  listEl: byId('runs'),
  errorEl: byId('runs-error'),
  summaryEl: byId('runs-summary'),
  followButton: byId('runs-follow-newest'),
  jobs,
  onSelect: (id) => (id ? select(id, { pin: true }) : followNewest()),
  onTick: (id, checked) => {
    const job = jobs.get(id);
    if (!job) return;
    job.ticked = checked;
    updateView();
    if (checked) ensureHistory(job);
  },
  onAnswer: {
    seen: () => controls.statusesSeen(),
    apply: (answer, seen) => controls.applyAnswer(answer, seen),
  },
  onEdit: editNetwork,
  ownNetwork,
});

// Which run the panels follow, which runs the charts draw.
const selection = createSelection({
  jobs,
  legend,
  panels: { charts, controls, filters, insight, runsList: runsView },
  ownNetwork,
  serverStatus: () => lastStatus,
});
const { select, followNewest, maybeFollow, updateView, showSelected, showPanels, selectedStatus,
  ensureHistory, trimHeavy, isSelected } = selection;

/** "Edit network" on a run: its network (from its record) in the builder, with its
 *  preset chosen in the form (whose network "Race it" runs against). */
async function editNetwork(id) {
  const run = await api('GET', `/api/runs/${encodeURIComponent(id)}`);
  if (!run || typeof run !== 'object' || !run.spec) throw new Error('the server did not say its network');
  controls.choosePreset(run.preset);
  sections.show('train');
  builder.edit(run.spec, run.preset);
}

// Steering the selected run (learning rate, momentum, one more epoch), the augmentation
// preview, and the charts' PNG downloads.
const steer = createSteer({
  controls,
  form: byId('steer-form'),
  lrInput: byId('steer-lr'),
  momentumInput: byId('steer-momentum'),
  momentumLabel: byId('steer-momentum-label'),
  applyButton: byId('steer-apply'),
  nowEl: byId('steer-now'),
  errorEl: byId('steer-error'),
  stepButton: byId('step-epoch'),
  stepErrorEl: byId('step-error'),
});
const augment = createAugmentPreview({
  form: byId('run-form'),
  inputs: {
    shift: byId('augment-shift'),
    scale: byId('augment-scale'),
    rotation: byId('augment-rotation'),
    stroke: byId('augment-stroke'),
  },
  grid: byId('augment-grid'),
  stampEl: byId('augment-stamp'),
  errorEl: byId('augment-error'),
});
createChartDownloads({ buttons: document.querySelectorAll('button[data-chart]'), charts });

// Colours live in CSS variables; follow a switch between light and dark (the toggle, or
// the system's setting).
createThemeToggle({ inputs: document.querySelectorAll('input[name="theme"]') });
onThemeChange(() => {
  charts.restyle();
  filters.restyle();
  draw.restyle();
  drawings.restyle();
  augment.restyle();
  insight.restyle();
});

// ----- statuses: from the stream, from answers, from GET /api/status -----

function applyStatus(status, { fromStream }) {
  lastStatus = { ...(lastStatus || {}), ...status };
  const changed = jobs.applyStatus(status, { fromStream });
  let stale = false;
  for (const job of changed) {
    runsView.update(job);
    charts.setPlannedEpochs(job.id, job.progress.epochs);
    if (job.stale) stale = true;
  }
  if (Array.isArray(status.runs)) runsView.summary(status);
  if (stale) refreshListSoon();
  if (!selection.id()) {
    // The oldest run in training (a comparison's first, as on the page that started
    // it), else the server's current run.
    const training = (Array.isArray(status.runs) ? status.runs : []).find((r) => ACTIVE.has(r.state));
    const id = training ? training.run_id : (status.state !== 'idle' && status.run_id);
    if (id && jobs.get(id)) select(id);
  }
  updateView();
}

/** An answer to an action (a status whose own fields are the run acted on). */
function applyAnswer(answer) {
  applyStatus(answer, { fromStream: false });
  showSelected();
}

// ----- the runs list: fetched at start, after a run ends, and on reconnection -----

const { refresh: refreshList, refreshSoon: refreshListSoon } = createRunsLoader({
  jobs,
  onLoaded: (list, asked) => {
    const { gone } = jobs.applyList(list, asked);
    for (const id of gone) forget(id);
    runsView.updateAll();
    updateView();
    showSelected();
  },
});

/** A run the server no longer has (taken out of the queue). */
function forget(id) {
  jobs.remove(id);
  runsView.remove(id);
  charts.dropRun(id);
  selection.forget(id);
}

// ----- the stream's events -----

const handlers = {
  run(d) {
    const isNew = !jobs.get(d.run_id)?.seenLive;
    const job = jobs.applyRun(d);
    charts.resetRun(d.run_id, d.config, d.continued_from);
    // A continued run's earlier epochs, as far as this page knows them (the runs list).
    for (const record of job.epochs.values()) charts.addEpoch({ ...record, run_id: job.id });
    runsView.update(job);
    if (isSelected(d)) showPanels(job);
    else maybeFollow(job);
    if (isSelected(d)) controls.applyRun(d, { isNew });
    trimHeavy();
    updateView();
    showSelected();
  },
  status(d) {
    applyStatus(d, { fromStream: true });
    controls.applyStatus(selectedStatus());
  },
  batch(d) {
    const job = jobs.applyBatch(d);
    if (job.state === 'queued') {   // its start was missed: it trains
      job.state = 'running';
      runsView.update(job);
      updateView();
    }
    charts.addBatch(d);
    if (isSelected(d)) controls.applyBatch(d);
    else if (!selection.id()) select(d.run_id);
    if (!job.answers) {             // its model answers drawings from now on
      job.answers = true;
      chooser.refreshSoon();
    }
  },
  // A replayed history's batches of one run, in order (see eventsUrl).
  batches(d) {
    if (!Array.isArray(d.batches)) return;
    for (const b of d.batches) {
      if (b && typeof b === 'object' && b.run_id === d.run_id) handlers.batch(b);
    }
  },
  epoch(d) {
    const job = jobs.applyEpoch(d);
    charts.addEpoch(d);
    runsView.update(job);
    if (isSelected(d)) controls.applyEpoch(d);
    drawings.runEpoch(d);
  },
  filters(d) {
    jobs.keep(jobs.ensure(d.run_id), 'lastFilters', d);
    if (isSelected(d)) filters.update(d);
  },
  evaluation(d) {
    jobs.keep(jobs.ensure(d.run_id), 'lastEvaluation', d);
    if (isSelected(d)) insight.handlers.evaluation(d);
  },
  histograms(d) {
    jobs.keep(jobs.ensure(d.run_id), 'lastHistograms', d);
    if (isSelected(d)) insight.handlers.histograms(d);
  },
  // A live change of the learning rate or momentum: marked on the loss chart.
  hyperparameters(d) {
    charts.addMarker(d);
    if (isSelected(d)) steer.applyChange(d);
  },
  done(d) {
    const job = jobs.applyDone(d);
    runsView.update(job);
    updateView();
    if (isSelected(d)) {
      controls.applyDone(d);
      showSelected();
    }
    chooser.refreshSoon();
    refreshListSoon();
    drawings.runEnded(d);
  },
  error(d) {
    if (!d.run_id) return;
    const job = jobs.applyError(d);
    runsView.update(job);
    updateView();
    if (isSelected(d)) {
      controls.showError(d.message);
      showSelected();
    }
    chooser.refreshSoon();
    refreshListSoon();
    drawings.runEnded(d, true);
  },
  // A checkpoint or the run's records not written (a full or read-only disk): the run
  // goes on, so a line under its progress, not the failed-run banner.
  storage_error(d) {
    if (isSelected(d)) controls.showStorageError(d.message);
  },
  // A queued run taken out of the queue.
  cancelled(d) {
    if (!d.run_id) return;
    forget(d.run_id);
    updateView();
  },
};

// One handler per event name of the stream, no more, no fewer.
for (const name of STREAM_EVENTS) {
  if (!handlers[name]) console.warn(`cnn-live: no handler for the stream's "${name}" events`);
}

try {
  auth = (await authAsked) || { write: false, read: false };
} catch (error) {
  console.warn('cnn-live: could not ask which requests need a token', error);
  auth = { write: false, read: false };
}
if (auth.read && !getToken()) {
  await askForToken();
  stream.retryNow();   // its first try, without the token, was refused
}

// A first picture before the stream's events are applied: the runs (first, so that runs
// get their colours in the server's order) and the status.
controls.loadPresets();
await refreshList();
const initialStatus = await firstStatus;
if (initialStatus) {
  applyStatus(initialStatus, { fromStream: false });
  showSelected();
}
chooser.refresh();
panelsReady = true;
showConnection(connection);
stream.release();

// Read-only hooks for browser tests.
Object.defineProperty(window, 'cnnLive', {
  value: Object.freeze({
    lossPoints: () => charts.lossPoints(),
    epochPoints: () => charts.epochPoints(),
    filterVersion: () => filters.version(),
    lastEventId: () => stream.lastEventId(),
    predictions: () => draw.predictions(),
    lastPrediction: () => draw.lastPrediction(),
    lossMarkers: () => charts.lossMarkers(),
    augmentVersion: () => augment.version(),
    layerStages: () => draw.layerStages(),
    evaluation: () => insight.hooks.evaluation(),
    histograms: () => insight.hooks.histograms(),
    // Several runs (issue 12).
    selectedRun: selection.id,
    runs: () => jobs.ordered().map((job) => ({
      id: job.id, name: runName(job), state: job.state, queuePosition: job.queuePosition,
      colour: job.colour, ticked: job.ticked, epochs: job.epochs.size,
    })),
    drawnRuns: () => charts.drawnRuns(),
    legend: (name) => charts.legend(name),
    modelChoices: () => chooser.options(),
    lastModel: () => draw.lastModel(),
    // Your own drawings (issue 15).
    drawings: () => drawings.state(),
  }),
  writable: false,
  configurable: false,
  enumerable: true,
});
