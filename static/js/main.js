// Wiring: the event stream feeds the charts, the filters, the controls and the runs list.
//
// Events are applied in the order they come. A "run" event clears the live charts and
// filters, so a page that connects mid-run (and is sent the run's history first) ends
// up drawing exactly what a page that watched from the start draws.

import { createCharts } from './charts.js';
import { createControls } from './controls.js';
import { createDraw } from './draw.js';
import { createFilters } from './filters.js';
import { createInsight } from './insight.js';
import { createRuns } from './runs.js';
import { connectStream } from './stream.js';
import { api, askForToken, getToken, setTokenAsker } from './api.js';
import { createTokenDialog } from './token.js';
import { createThemeToggle, onThemeChange } from './theme.js';
import { createSteer } from './steer.js';
import { createAugmentPreview } from './augment.js';
import { createChartDownloads } from './export.js';

const byId = (id) => document.getElementById(id);

// The server's token, asked for when a request gets 401 (see api.js).
setTokenAsker(createTokenDialog({
  dialog: byId('token-dialog'),
  form: byId('token-form'),
  input: byId('token-input'),
  message: byId('token-message'),
  cancel: byId('token-cancel'),
}));

// A started run shows at once, even before its "run" event (which clears again).
const controls = createControls({ onStarted: (runId) => follow(runId) });

const charts = createCharts({
  lossEl: byId('loss-chart'),
  accuracyEl: byId('accuracy-chart'),
  smoothingInput: byId('smoothing'),
  smoothingOutput: byId('smoothing-value'),
  logInput: byId('loss-log'),
  onLossSmoothed: (value) => controls.showLoss(value),
});

const filters = createFilters({ container: byId('filters'), stampEl: byId('filters-stamp') });

// The evaluation (confusion matrix, mistakes) and the weight histograms of each epoch.
const insight = createInsight();

// The drawing pad and the network's reading of it (POST /api/predict).
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
});

const runs = createRuns({
  listEl: byId('runs'),
  errorEl: byId('runs-error'),
  onChange: (list) => charts.setComparisons(list),
});

// Steering the run (learning rate, momentum, one more epoch), the augmentation preview,
// and the charts' PNG downloads.
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
  runs.restyle();
  draw.restyle();
  augment.restyle();
  insight.restyle();
});

// ----- the live run -----
let liveRun = null;             // the run the charts and filters show
const knownRuns = new Set();    // runs whose "run" event has been seen

/** Events of a run we have not seen start: adopt it, or switch to it. */
function follow(runId) {
  if (!runId || runId === liveRun) return;
  if (liveRun !== null) {
    charts.reset({ run_id: runId });
    filters.reset(null);
  } else {
    charts.adoptRun(runId);
  }
  liveRun = runId;
}

const handlers = {
  ...insight.handlers,   // evaluation, histograms: they follow a new run by themselves
  run(d) {
    const isNew = !knownRuns.has(d.run_id);
    knownRuns.add(d.run_id);
    liveRun = d.run_id;
    charts.reset(d);
    filters.reset(d.spec);
    insight.reset(d.run_id);
    controls.applyRun(d, { isNew });
    runs.refresh();
  },
  status(d) {
    if (d.run_id) {
      follow(d.run_id);
      charts.setPlannedEpochs(d.epochs);
    }
    controls.applyStatus(d);
  },
  batch(d) {
    follow(d.run_id);
    charts.addBatch(d);
    controls.applyBatch(d);
  },
  epoch(d) {
    follow(d.run_id);
    charts.addEpoch(d);
    controls.applyEpoch(d);
    refreshRunsSoon();
  },
  filters(d) {
    follow(d.run_id);
    filters.update(d);
  },
  done(d) {
    controls.applyDone(d);
    runs.refresh();
  },
  error(d) {
    controls.showError(d.message);
    runs.refresh();
  },
  // A checkpoint or the run's records not written (a full or read-only disk): the run
  // goes on, so a line under its progress, not the failed-run banner.
  storage_error(d) {
    follow(d.run_id);
    controls.showStorageError(d.message);
  },
};

// A live change of the learning rate or momentum: marked on the loss chart.
handlers.hyperparameters = (d) => {
  follow(d.run_id);
  charts.addMarker(d);
  steer.applyChange(d);
};

// The runs list shows each run's epochs so far. Epochs of a small network can come
// many times a second: refresh at most once a second, and once more after the last.
let runsRefreshTimer = null;
function refreshRunsSoon() {
  if (runsRefreshTimer !== null) return;
  runsRefreshTimer = setTimeout(() => {
    runsRefreshTimer = null;
    runs.refresh();
  }, 1000);
}

function showConnection(state) {
  const el = byId('connection');
  const text = { connected: 'connected', reconnecting: 'reconnecting…', disconnected: 'disconnected' }[state];
  if (!text) return;
  el.textContent = text;
  el.classList.remove('connected', 'reconnecting', 'disconnected');
  el.classList.add(state);
}

// Which requests need the token (GET /api/auth, always open). With CNN_LIVE_TOKEN_READ
// even watching does: ask up front, and give the event stream the token as ?token=
// (EventSource cannot send headers).
let auth = { write: false, read: false };
try {
  auth = await api('GET', '/api/auth');
} catch (error) {
  console.warn('cnn-live: could not ask which requests need a token', error);
}
if (auth.read && !getToken()) await askForToken();

function eventsUrl() {
  const token = auth.read ? getToken() : '';
  return token ? `/api/events?token=${encodeURIComponent(token)}` : '/api/events';
}

const stream = connectStream({
  url: eventsUrl,
  onEvent: (name, data) => {
    const handler = handlers[name];
    if (handler && data && typeof data === 'object') handler(data);
  },
  onConnection: (state) => {
    showConnection(state);
    if (state === 'connected') runs.refresh();
  },
});

// A first picture before the stream has said anything.
controls.loadPresets();
controls.loadStatus();
runs.refresh();

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
  }),
  writable: false,
  configurable: false,
  enumerable: true,
});
