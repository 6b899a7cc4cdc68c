// The loss and accuracy charts (uPlot), of several runs at once (issue 12): the runs'
// data as events bring them, and when to draw. Events only update plain arrays, per
// run (chart-series.js); the charts are redrawn at most 5 times a second, only while
// they can be seen, a late page's replayed history in one pass.
//
// Which runs are drawn (the active ones and the ticked ones) and which is selected,
// main.js decides; which lines that makes and their data, chart-lines.js; how the
// charts look, chart-options.js; the live changes of the learning rate marked on the
// loss chart, chart-markers.js.
//
// x is in epochs: a batch at global_step g of a run with S steps per epoch sits at g / S,
// and an epoch's train and test figures sit at the epoch's end, x = epoch.

import uPlot from '../vendor/uplot/uPlot.esm.js';
import { pacedTask } from './format.js';
import { watchShown } from './visibility.js';
import { backlog } from './stream.js';
import {
  addBatchPoint, addMarker, hasEpochFigure, newSeries, restartedSeries, updateSmoothed,
} from './chart-series.js';
import { accuracyData, accuracyLines, lossData, lossLines } from './chart-lines.js';
import { accuracyOptions, chartHeight, lossOptions } from './chart-options.js';
import { describeChange } from './chart-markers.js';

/**
 * @param {object} options
 * @param {(id: string) => {label: string, colour: string}} options.describe  a run's legend
 *   name and colour (asked when the charts are rebuilt)
 */
export function createCharts({ lossEl, accuracyEl, smoothingInput, smoothingOutput, logInput,
  onLossSmoothed, describe }) {
  const runs = new Map();         // run id -> its series data
  let drawnIds = [];              // the runs drawn, in the runs list's order
  let selected = null;            // the run whose extras are drawn
  let smoothing = Number(smoothingInput.value) || 0;
  let logScale = Boolean(logInput && logInput.checked);

  // ----- what the charts show -----
  let lossChart = null;
  let accuracyChart = null;
  let builtKey = '';              // the series the charts were built with
  let looks = [];                 // per drawn run: {id, label, colour}, as built
  let drawn = { loss: 0, epochs: 0, markers: [], runs: [] };

  function series(id) {
    let s = runs.get(id);
    if (!s) {
      s = newSeries();
      runs.set(id, s);
    }
    return s;
  }

  const isDrawn = (id) => drawnIds.includes(id);
  const selectedSeries = () => (selected && isDrawn(selected) ? runs.get(selected) || null : null);
  // Measured on people's held-out drawings (issue 15): one more line on the accuracy chart.
  const hasDrawings = (id) => runs.has(id) && hasEpochFigure(runs.get(id), 'drawings_accuracy');

  /** The x range's end: the drawn runs' planned epochs, or more if their data go further. */
  function xMax() {
    let max = 0;
    for (const id of drawnIds) {
      const s = runs.get(id);
      if (!s) continue;
      max = Math.max(max, s.planned);
      if (s.batchX.length) max = Math.max(max, s.batchX[s.batchX.length - 1]);
      for (const e of s.epochs.keys()) max = Math.max(max, e);
      if (s.markers.length) max = Math.max(max, s.markers[s.markers.length - 1].x);
    }
    return max > 0 ? max : 1;
  }

  // ----- the lines and their data, as drawn now -----
  const currentLossLines = () => lossLines(looks, selected);
  const currentAccuracyLines = () => accuracyLines(looks, selected, hasDrawings);

  function currentLossData() {
    // Two points per pixel of the chart's width at most (its width, as last measured).
    const maxPoints = 2 * (widths.get(lossEl) || lossEl.clientWidth || 400);
    return lossData(currentLossLines(), series, { maxPoints, smoothing, logScale });
  }

  const currentAccuracyData = () => accuracyData(currentAccuracyLines(), series);

  // ----- drawing -----
  // The width the ResizeObserver last saw: reading clientWidth forces a layout, about
  // 60 ms of a slow phone's time when the page has just changed.
  function widthOf(el) {
    return Math.max(200, widths.get(el) || Math.floor(el.clientWidth));
  }

  function viewKey() {
    return `${selected}|${drawnIds.join(',')}|${logScale}|${drawnIds.filter(hasDrawings).join(',')}`;
  }

  function describeAll() {
    looks = drawnIds.map((id) => ({ id, ...describe(id) }));
  }

  function label(el, what) {
    const names = looks.map((look) => look.label);
    el.setAttribute('aria-label', names.length ? `${what} of ${names.join(', ')}` : `${what}: no run yet`);
  }

  // The accuracy chart is built a frame after the loss chart: both in one task were one
  // task of ~250 ms on a phone throttled 4x (a late page's first drawing). Until then
  // the old one stays (no gap in the page), and is not given the new view's data.
  let accuracyBuild = 0;

  function build() {
    describeAll();
    if (lossChart) lossChart.destroy();
    lossChart = new uPlot(lossOptions({ width: widthOf(lossEl), lines: currentLossLines(), xMax,
      logScale, markers: () => selectedSeries()?.markers || [] }), currentLossData(), lossEl);
    label(lossEl, 'Loss against epochs: smoothed batch loss and test loss per epoch');
    builtKey = viewKey();
    cancelAnimationFrame(accuracyBuild);
    accuracyBuild = requestAnimationFrame(buildAccuracy);
  }

  function buildAccuracy() {
    accuracyBuild = 0;
    accuracyDirty = false;
    if (accuracyChart) accuracyChart.destroy();
    accuracyChart = new uPlot(accuracyOptions({ width: widthOf(accuracyEl),
      lines: currentAccuracyLines(), xMax }), currentAccuracyData(), accuracyEl);
    label(accuracyEl, 'Test accuracy per epoch');
  }

  // What changed since the last frame: batches only touch the loss chart.
  let lossDirty = true;
  let accuracyDirty = true;
  let rebuild = true;

  // Charts nobody sees (scrolled away, or in a hidden section on a phone) are not
  // drawn: their data wait, and they are brought up to date when they show.
  const lossShown = watchShown(lossEl, () => draw(true));
  const accuracyShown = watchShown(accuracyEl, () => draw(true));

  // At most 5 redraws a second (each rebuilds the aligned data of every drawn run); a
  // late page's replayed history in one pass (pacedTask).
  const draw = pacedTask(() => {
    const showLoss = lossShown();
    const showAccuracy = accuracyShown();
    let drewLoss = false;
    if (rebuild || !lossChart || builtKey !== viewKey()) {
      if (lossChart && !showLoss && !showAccuracy) {
        reportLoss();
        return;   // rebuilt when one of them shows
      }
      build();
      rebuild = false;
      lossDirty = false;
      accuracyDirty = false;
      drewLoss = true;
    } else {
      if (lossDirty && showLoss) {
        lossChart.setData(currentLossData());
        lossDirty = false;
        drewLoss = true;
      }
      if (accuracyDirty && showAccuracy && !accuracyBuild) {
        accuracyChart.setData(currentAccuracyData());
        accuracyDirty = false;
      }
    }
    // What the charts show now (the tests' hooks): the loss chart's points as drawn.
    const s = selectedSeries();
    drawn = {
      loss: drewLoss ? (s ? s.batchX.length : 0) : drawn.loss,
      epochs: s ? s.epochs.size : 0,
      markers: drewLoss ? (s ? s.markers.map((m) => ({ ...m })) : []) : drawn.markers,
      runs: looks.map((look) => ({ ...look, lossPoints: series(look.id).batchX.length,
        epochPoints: series(look.id).epochs.size, selected: look.id === selected })),
    };
    reportLoss();
  }, { settled: () => backlog() === 0 });

  /** The selected run's smoothed batch loss, for the figures above the charts (kept
   *  up to date even while the chart is not drawn: the smoothing is incremental). */
  function reportLoss() {
    if (!onLossSmoothed) return;
    const s = selectedSeries();
    if (s) updateSmoothed(s, smoothing);
    onLossSmoothed(s && s.smoothed.length ? s.smoothed[s.smoothed.length - 1] : null);
  }

  // Charts follow their container's width.
  const widths = new Map();
  const observer = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const width = Math.floor(entry.contentRect.width);
      if (!width || widths.get(entry.target) === width) continue;
      widths.set(entry.target, width);
      const chart = entry.target === lossEl ? lossChart : accuracyChart;
      if (chart) chart.setSize({ width: Math.max(200, width), height: chartHeight(width) });
    }
  });
  observer.observe(lossEl);
  observer.observe(accuracyEl);

  /** Redraw if run `id` is drawn (undefined: in any case). */
  function redraw({ loss = true, accuracy = true, id, urgent = false } = {}) {
    if (id !== undefined && !isDrawn(id)) return;
    lossDirty ||= loss;
    accuracyDirty ||= accuracy;
    draw(urgent);
  }

  function showSmoothing() {
    smoothingOutput.value = smoothing.toFixed(2);
    smoothingOutput.textContent = smoothing.toFixed(2);
  }
  smoothingInput.addEventListener('input', () => {
    const value = Number(smoothingInput.value);
    smoothing = Number.isFinite(value) ? Math.min(0.99, Math.max(0, value)) : 0;
    for (const s of runs.values()) s.smoothedValid = 0;
    showSmoothing();
    redraw({ accuracy: false, urgent: true });
  });
  showSmoothing();

  if (logInput) {
    logInput.addEventListener('change', () => {
      logScale = logInput.checked;
      rebuild = true; // the scale's kind is fixed when a chart is made
      draw(true);
    });
  }

  function addBatch(b) {
    if (addBatchPoint(series(b.run_id), b)) redraw({ accuracy: false, id: b.run_id });
  }

  function addLiveChange(change) {
    const added = addMarker(series(change.run_id), change, describeChange(change));
    if (added && change.run_id === selected) redraw({ accuracy: false, id: change.run_id });
  }

  function addEpoch(record) {
    if (!Number.isFinite(record.epoch)) return;
    const s = series(record.run_id);
    s.epochs.set(record.epoch, record);
    if (Number.isFinite(record.epochs)) s.planned = Math.max(s.planned, record.epochs);
    redraw({ id: record.run_id, urgent: true });
  }

  // The first drawing waits for main.js's first setView (the runs known): an empty
  // chart built first would be built again at once.
  return {
    /** Forget run `id`'s data (it starts), or what came after epoch `keepThrough`
     *  (it goes on from that epoch's checkpoint: continued, or stepped). */
    resetRun(id, config = null, keepThrough = null) {
      runs.set(id, restartedSeries(runs.get(id), config, keepThrough));
      redraw({ id, urgent: true });
    },
    /** Drop a run's data (cancelled, or too old to keep). */
    dropRun(id) {
      runs.delete(id);
    },
    hasData: (id) => {
      const s = runs.get(id);
      return Boolean(s && (s.batchX.length || s.epochs.size));
    },
    hasBatches: (id) => Boolean(runs.get(id)?.batchX.length),
    /** Which runs are drawn (in order) and which is selected; their names and colours
     *  are asked again (`relabel`: even if the same runs are drawn). */
    setView(ids, selectedId, { relabel = false } = {}) {
      const changed = ids.join(',') !== drawnIds.join(',') || selectedId !== selected;
      drawnIds = [...ids];
      selected = selectedId;
      if (changed || relabel || !lossChart) {
        rebuild = true;
        draw(true);
      }
    },
    setPlannedEpochs(id, n) {
      const s = series(id);
      if (Number.isFinite(n) && n > 0 && n !== s.planned) {
        s.planned = n;
        redraw({ id });
      }
    },
    addBatch,
    /** A live change of the learning rate or momentum (a "hyperparameters" event): a
     *  marker where it took effect. Replayed events replace their own marker. */
    addMarker: addLiveChange,
    addEpoch,
    /** A finished run's history from GET /api/runs/{id}/metrics.json. */
    loadHistory(id, metrics) {
      const s = series(id);
      const planned = metrics?.config?.epochs;
      if (Number.isFinite(planned)) s.planned = Math.max(s.planned, planned);
      for (const b of Array.isArray(metrics?.batches) ? metrics.batches : []) {
        if (b && typeof b === 'object') addBatch({ ...b, run_id: id });
      }
      for (const e of Array.isArray(metrics?.epochs) ? metrics.epochs : []) {
        if (e && typeof e === 'object') addEpoch({ ...e, run_id: id });
      }
      for (const change of Array.isArray(metrics?.hyperparameter_changes) ? metrics.hyperparameter_changes : []) {
        if (change && typeof change === 'object') addLiveChange({ ...change, run_id: id });
      }
      redraw({ id, urgent: true });
    },
    /** Colours come from CSS: rebuild after a theme change. */
    restyle() {
      rebuild = true;
      draw(true);
    },
    /** The uPlot chart "loss" or "accuracy" (for a PNG export). */
    chart: (name) => (name === 'loss' ? lossChart : accuracyChart),
    runId: () => selected,
    lossMarkers: () => drawn.markers,
    lossPoints: () => drawn.loss,
    epochPoints: () => drawn.epochs,
    /** The runs last drawn: [{id, label, colour, lossPoints, epochPoints, selected}]. */
    drawnRuns: () => drawn.runs.map((run) => ({ ...run })),
    /** The legend's labels of chart "loss" or "accuracy", as built. */
    legend: (name) => {
      const u = name === 'loss' ? lossChart : accuracyChart;
      return u ? u.series.slice(1).map((s) => s.label) : [];
    },
  };
}
