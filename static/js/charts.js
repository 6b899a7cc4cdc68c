// The loss and accuracy charts (uPlot), of several runs at once (issue 12). Events only
// update plain arrays, per run; the charts are redrawn at most once per animation frame.
//
// Every run drawn (the active ones and the ticked ones, main.js decides) has its own
// colour: on the loss chart its smoothed batch loss (solid) and test loss per epoch
// (dashed, dots), on the accuracy chart its test accuracy per epoch (solid, dots). The
// selected run also shows its raw batch loss (faint) and its train figures (dotted), and
// its live changes of the learning rate. The legend names each line by its run.
//
// x is in epochs: a batch at global_step g of a run with S steps per epoch sits at g / S,
// and an epoch's train and test figures sit at the epoch's end, x = epoch.
//
// A live change of the learning rate or momentum (a "hyperparameters" event) is marked
// on the loss chart: a dashed vertical line where it took effect, labelled "lr a → b".

import uPlot from '../vendor/uplot/uPlot.esm.js';
import { cssVar, formatNumber, formatPercent, pacedTask, parseColour } from './format.js';
import { watchShown } from './visibility.js';
import { backlog } from './stream.js';
import {
  align, decimate, epochColumn, lowerBound, newSeries, stepX, updateSmoothed,
} from './chart-series.js';

const SYNC_KEY = 'cnn-live-epochs';

function colours() {
  return {
    axis: cssVar('--chart-axis', '#5b6472'),
    grid: cssVar('--chart-grid', 'rgba(0,0,0,0.07)'),
    marker: cssVar('--chart-marker', '#7c3aed'),
    font: cssVar('--chart-font', '12px system-ui, sans-serif'),
    labelFont: cssVar('--chart-label-font', '600 12px system-ui, sans-serif'),
  };
}

function axis(c, label, values, horizontal = false) {
  return {
    label,
    stroke: c.axis,
    font: c.font,
    labelFont: c.labelFont,
    labelSize: 18,
    labelGap: 0,
    gap: 4,
    size: horizontal ? 26 : 46,
    grid: { stroke: c.grid, width: 1 },
    ticks: { stroke: c.grid, width: 1, size: 4 },
    ...(values ? { values } : {}),
  };
}

// Values in the legend while the cursor reads the chart; nothing (not a dash) elsewhere.
const epochValue = (u, v) => (v == null ? '' : `${Number(v.toFixed(3))}`);
const lossValue = (u, v) => (v == null ? '' : formatNumber(v));
const accuracyValue = (u, v) => (v == null ? '' : formatPercent(v));

// The legend lists the lines by name; their values (and the cursor's epoch) only while
// the cursor is on the chart (uPlot's "u-live" legend), never placeholders.
function legendFollowsCursor(u) {
  const legend = u.root.querySelector('.u-legend');
  if (legend) legend.classList.toggle('u-live', u.cursor.idx != null);
}

/** Height for a chart of the given width: wide but never tiny or huge. */
function chartHeight(width) {
  return Math.round(Math.min(320, Math.max(210, width * 0.6)));
}

/** "lr 0.003 → 0.001", and the momentum's change if it changed. */
export function describeChange(change) {
  const before = change.previous || {};
  const parts = [];
  const changed = (key) => Number.isFinite(change[key]) && change[key] !== before[key];
  if (changed('learning_rate') || !changed('momentum')) {
    parts.push(`lr ${formatNumber(before.learning_rate)} → ${formatNumber(change.learning_rate)}`);
  }
  if (changed('momentum')) {
    parts.push(`momentum ${formatNumber(before.momentum)} → ${formatNumber(change.momentum)}`);
  }
  return parts.join(', ');
}

/** The markers' dashed lines and labels, on the plot area (a uPlot draw hook). Labels
 *  take turns on three rows, so that changes close together stay readable. */
function drawMarkers(u, markers, colour, font) {
  if (!markers.length) return;
  const { ctx, bbox } = u;
  const ratio = ctx.canvas.width / Math.max(1, u.width);
  ctx.save();
  ctx.strokeStyle = colour;
  ctx.fillStyle = colour;
  ctx.lineWidth = Math.max(1, Math.round(1.5 * ratio));
  ctx.setLineDash([5 * ratio, 4 * ratio]);
  ctx.font = font.replace(/(\d+(?:\.\d+)?)px/, (m, size) => `${Number(size) * ratio}px`);
  ctx.textBaseline = 'top';
  const lineHeight = 16 * ratio;
  markers.forEach((marker, index) => {
    const x = Math.round(u.valToPos(marker.x, 'x', true));
    if (x < bbox.left - 1 || x > bbox.left + bbox.width + 1) return;
    ctx.beginPath();
    ctx.moveTo(x, bbox.top);
    ctx.lineTo(x, bbox.top + bbox.height);
    ctx.stroke();
    // The label to the right of its line, or to the left near the right edge.
    const width = ctx.measureText(marker.label).width;
    const right = x + 4 * ratio + width <= bbox.left + bbox.width;
    ctx.textAlign = right ? 'left' : 'right';
    ctx.fillText(marker.label, right ? x + 4 * ratio : x - 4 * ratio, bbox.top + 4 * ratio + (index % 3) * lineHeight);
  });
  ctx.restore();
}

/** `colour` (#rrggbb or rgb()) at opacity `alpha`. */
function faded(colour, alpha) {
  const rgb = parseColour(colour, null);
  return rgb ? `rgba(${rgb.join(',')},${alpha})` : colour;
}

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

  const xScale = () => ({ time: false, range: () => [0, xMax()] });

  /** Size, cursor and legend: the same for both charts. */
  function frameOptions(width) {
    return {
      width,
      height: chartHeight(width),
      cursor: { sync: { key: SYNC_KEY }, drag: { x: false, y: false }, points: { size: 7 } },
      legend: { live: true },
    };
  }

  function frameHooks(extra = {}) {
    return { setLegend: [legendFollowsCursor], ...extra };
  }

  // ----- which lines: per drawn run -----
  // Each entry: {id, kind, label, options}; kinds: raw, smooth, trainLoss, testLoss
  // (loss chart), testAcc, trainAcc (accuracy chart).
  function lossLines() {
    const lines = [];
    for (const look of looks) {
      const { id, label, colour } = look;
      const main = id === selected;
      if (main) {
        lines.push({ id, kind: 'raw', label: `${label} · batch`,
          options: { stroke: faded(colour, 0.28), width: 1 } });
      }
      lines.push({ id, kind: 'smooth', label,
        options: { stroke: colour, width: main ? 2.5 : 2 } });
      if (main) {
        lines.push({ id, kind: 'trainLoss', label: `${label} · train`,
          options: { stroke: colour, width: 1.5, dash: [2, 3],
            points: { show: true, size: 6, fill: 'transparent', stroke: colour } } });
      }
      lines.push({ id, kind: 'testLoss', label: `${label} · test`,
        options: { stroke: colour, width: 1.5, dash: [6, 4],
          points: { show: true, size: 7, fill: colour, stroke: colour } } });
    }
    return lines;
  }

  function accuracyLines() {
    const lines = [];
    for (const { id, label, colour } of looks) {
      lines.push({ id, kind: 'testAcc', label: `${label} · test`,
        options: { stroke: colour, width: id === selected ? 2.5 : 2,
          points: { show: true, size: 7, fill: colour, stroke: colour } } });
      if (id === selected) {
        lines.push({ id, kind: 'trainAcc', label: `${label} · train`,
          options: { stroke: colour, width: 1.5, dash: [2, 3],
            points: { show: true, size: 6, fill: 'transparent', stroke: colour } } });
      }
    }
    return lines;
  }

  function uSeries(lines, value) {
    return [{ label: 'epoch', value: epochValue },
      ...lines.map((line) => ({ label: line.label, spanGaps: true, points: { show: false },
        value, ...line.options }))];
  }

  function lossOptions(width) {
    const c = colours();
    return {
      ...frameOptions(width),
      hooks: frameHooks({ draw: [(u) => {
        const s = selectedSeries();
        if (s) drawMarkers(u, s.markers, c.marker, c.font);
      }] }),
      scales: {
        x: xScale(),
        y: logScale ? {
          distr: 3,
          log: 10,
          range: (u, min, max) => {
            if (!(min > 0) || !(max > 0)) return [0.01, 10];
            return uPlot.rangeLog(min, max, 10, true);
          },
        } : {
          range: (u, min, max) => {
            if (min == null || max == null || !Number.isFinite(max)) return [0, 1];
            const top = max > 0 ? max * 1.06 : 1;
            return [Math.min(0, min), top];
          },
        },
      },
      axes: [axis(c, 'epoch', null, true), axis(c, 'loss', (u, splits) => splits.map((v) => (v == null ? '' : formatNumber(v, 3))))],
      series: uSeries(lossLines(), lossValue),
    };
  }

  function accuracyOptions(width) {
    const c = colours();
    return {
      ...frameOptions(width),
      hooks: frameHooks(),
      scales: {
        x: xScale(),
        y: {
          range: (u, min, max) => {
            if (min == null || max == null || !Number.isFinite(min)) return [0, 1];
            // Zoom in on the interesting top, in steps of 5 points, never past 100%.
            const low = Math.max(0, Math.floor((min - 0.01) * 20) / 20);
            return [Math.min(low, 0.9), 1];
          },
        },
      },
      axes: [
        axis(c, 'epoch', null, true),
        axis(c, 'accuracy', (u, splits) => splits.map((v) => (v == null ? '' : `${Number((v * 100).toFixed(1))}%`))),
      ],
      series: uSeries(accuracyLines(), accuracyValue),
    };
  }

  // ----- building the aligned data uPlot wants -----
  function lossData() {
    // Two points per pixel of the chart's width at most (its width, as last measured).
    const maxPoints = 2 * (widths.get(lossEl) || lossEl.clientWidth || 400);
    const columns = lossLines().map((line) => {
      const s = series(line.id);
      if (line.kind === 'raw') return decimate(s.batchX, s.batchLoss, maxPoints, true);
      if (line.kind === 'smooth') {
        updateSmoothed(s, smoothing);
        return decimate(s.batchX, s.smoothed, maxPoints);
      }
      return epochColumn(s, line.kind === 'trainLoss' ? 'train_loss' : 'test_loss');
    });
    const data = align(columns);
    if (logScale) {
      // A log axis has no room for zero or less.
      for (let k = 1; k < data.length; k++) {
        const ys = data[k];
        for (let i = 0; i < ys.length; i++) if (!(ys[i] > 0)) ys[i] = null;
      }
    }
    return data;
  }

  function accuracyData() {
    return align(accuracyLines().map((line) => epochColumn(series(line.id),
      line.kind === 'trainAcc' ? 'train_accuracy' : 'test_accuracy')));
  }

  // ----- drawing -----
  // The width the ResizeObserver last saw: reading clientWidth forces a layout, about
  // 60 ms of a slow phone's time when the page has just changed.
  function widthOf(el) {
    return Math.max(200, widths.get(el) || Math.floor(el.clientWidth));
  }

  function viewKey() {
    return `${selected}|${drawnIds.join(',')}|${logScale}`;
  }

  function describeAll() {
    looks = drawnIds.map((id) => ({ id, ...describe(id) }));
  }

  function label(el, what) {
    const names = looks.map((look) => look.label);
    el.setAttribute('aria-label', names.length ? `${what} of ${names.join(', ')}` : `${what}: no run yet`);
  }

  function build() {
    describeAll();
    if (lossChart) lossChart.destroy();
    if (accuracyChart) accuracyChart.destroy();
    lossChart = new uPlot(lossOptions(widthOf(lossEl)), lossData(), lossEl);
    accuracyChart = new uPlot(accuracyOptions(widthOf(accuracyEl)), accuracyData(), accuracyEl);
    label(lossEl, 'Loss against epochs: smoothed batch loss and test loss per epoch');
    label(accuracyEl, 'Test accuracy per epoch');
    builtKey = viewKey();
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
        lossChart.setData(lossData());
        lossDirty = false;
        drewLoss = true;
      }
      if (accuracyDirty && showAccuracy) {
        accuracyChart.setData(accuracyData());
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
    const x = stepX(b);
    if (!Number.isFinite(x)) return;
    const s = series(b.run_id);
    const loss = Number.isFinite(b.loss) ? b.loss : null;
    const n = s.batchX.length;
    if (n === 0 || x > s.batchX[n - 1]) {
      s.batchX.push(x);
      s.batchLoss.push(loss);
    } else {
      // A replayed or late point: replace or insert in order, keeping the charts idempotent.
      const at = lowerBound(s.batchX, x);
      if (s.batchX[at] === x) s.batchLoss[at] = loss;
      else {
        s.batchX.splice(at, 0, x);
        s.batchLoss.splice(at, 0, loss);
      }
      s.smoothedValid = 0; // the running average past `at` is stale: recompute it
    }
    redraw({ accuracy: false, id: b.run_id });
  }

  function addMarker(change) {
    const x = stepX(change);
    if (!Number.isFinite(x)) return;
    const s = series(change.run_id);
    const marker = { x, label: describeChange(change), learning_rate: change.learning_rate,
      momentum: change.momentum };
    const at = s.markers.findIndex((m) => m.x >= x);
    if (at === -1) s.markers.push(marker);
    else if (s.markers[at].x === x) s.markers[at] = marker;
    else s.markers.splice(at, 0, marker);
    if (change.run_id === selected) redraw({ accuracy: false, id: change.run_id });
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
      const old = runs.get(id);
      const s = newSeries();
      s.planned = config && Number.isFinite(config.epochs) ? config.epochs : 0;
      if (old && Number.isFinite(keepThrough) && keepThrough > 0) {
        const end = lowerBound(old.batchX, keepThrough + 1e-9);
        s.batchX = old.batchX.slice(0, end);
        s.batchLoss = old.batchLoss.slice(0, end);
        s.epochs = new Map([...old.epochs].filter(([epoch]) => epoch <= keepThrough));
        s.markers = old.markers.filter((m) => m.x <= keepThrough);
      }
      runs.set(id, s);
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
    addMarker,
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
        if (change && typeof change === 'object') addMarker({ ...change, run_id: id });
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
