// The loss and accuracy charts (uPlot). Events only update plain arrays; the charts
// are redrawn at most once per animation frame.
//
// x is in epochs: a batch at global_step g of a run with S steps per epoch sits at g / S,
// and an epoch's train and test figures sit at the epoch's end, x = epoch.
//
// A live change of the learning rate or momentum (a "hyperparameters" event) is marked
// on the loss chart: a dashed vertical line where it took effect, labelled "lr a → b".

import uPlot from '../vendor/uplot/uPlot.esm.js';
import { cssVar, formatNumber, formatPercent, frameTask } from './format.js';

const SYNC_KEY = 'cnn-live-epochs';

function colours() {
  return {
    axis: cssVar('--chart-axis', '#5b6472'),
    grid: cssVar('--chart-grid', 'rgba(0,0,0,0.07)'),
    raw: cssVar('--chart-loss-raw', 'rgba(37,99,235,0.25)'),
    smooth: cssVar('--chart-loss', '#2563eb'),
    train: cssVar('--chart-train', '#d97706'),
    test: cssVar('--chart-test', '#059669'),
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

const epochValue = (u, v) => (v == null ? '–' : `${Number(v.toFixed(3))}`);
const lossValue = (u, v) => formatNumber(v);
const accuracyValue = (u, v) => formatPercent(v);

/** Height for a chart of the given width: wide but never tiny or huge. */
function chartHeight(width) {
  return Math.round(Math.min(320, Math.max(210, width * 0.6)));
}

/** Where a batch or a live change sits on the x axis (epochs), or NaN. */
function stepX(event) {
  const steps = event.steps > 0 ? event.steps : 1;
  return Number.isFinite(event.global_step) ? event.global_step / steps
    : (event.epoch - 1) + event.step / steps;
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

/** Binary search: index of the first element of sorted `xs` that is >= x. */
function lowerBound(xs, x) {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export function createCharts({ lossEl, accuracyEl, smoothingInput, smoothingOutput, logInput, onLossSmoothed }) {
  // ----- the live run's data -----
  let runId = null;
  let epochsPlanned = 0;
  const batchX = [];
  const batchLoss = [];
  let smoothed = [];
  let smoothedValid = 0;          // smoothed[0..smoothedValid) are up to date
  let smoothState = { ema: 0, weight: 0 }; // the running average after smoothedValid points
  let smoothing = Number(smoothingInput.value) || 0;
  const epochs = new Map();       // epoch number -> epoch record
  let comparisons = [];           // [{id, label, colour, points: [[epoch, accuracy], ...]}]
  const markers = [];             // live changes, sorted by x: [{x, label, learning_rate, momentum}]
  let logScale = Boolean(logInput && logInput.checked);

  // ----- what the charts show -----
  let lossChart = null;
  let accuracyChart = null;
  let accuracySeriesKey = '';
  let drawn = { loss: 0, epochs: 0, markers: [] };

  /** The x range's end: the live run's planned epochs, or more if the data go further
   *  (the accuracy chart also fits the compared runs). */
  function xMax(withComparisons) {
    let max = epochsPlanned;
    if (batchX.length) max = Math.max(max, batchX[batchX.length - 1]);
    for (const e of epochs.keys()) max = Math.max(max, e);
    if (markers.length) max = Math.max(max, markers[markers.length - 1].x);
    if (withComparisons) for (const run of comparisons) for (const [e] of run.points) max = Math.max(max, e);
    return max > 0 ? max : 1;
  }

  const xScale = (withComparisons) => ({ time: false, range: () => [0, xMax(withComparisons)] });

  /** Size, cursor and legend: the same for both charts. */
  function frameOptions(width) {
    return {
      width,
      height: chartHeight(width),
      cursor: { sync: { key: SYNC_KEY }, drag: { x: false, y: false }, points: { size: 7 } },
      legend: { live: true },
    };
  }

  function lossOptions(width) {
    const c = colours();
    return {
      ...frameOptions(width),
      hooks: { draw: [(u) => drawMarkers(u, markers, c.marker, c.font)] },
      scales: {
        x: xScale(false),
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
      axes: [axis(c, 'epoch', null, true), axis(c, 'loss', (u, splits) => splits.map((v) => formatNumber(v, 3)))],
      series: [
        { label: 'epoch', value: epochValue },
        { label: 'batch loss', stroke: c.raw, width: 1, spanGaps: true, points: { show: false }, value: lossValue },
        { label: 'smoothed', stroke: c.smooth, width: 2, spanGaps: true, points: { show: false }, value: lossValue },
        { label: 'train (epoch)', stroke: c.train, width: 1.5, spanGaps: true, dash: [6, 4],
          points: { show: true, size: 7, fill: c.train, stroke: c.train }, value: lossValue },
        { label: 'test (epoch)', stroke: c.test, width: 2, spanGaps: true,
          points: { show: true, size: 7, fill: c.test, stroke: c.test }, value: lossValue },
      ],
    };
  }

  function accuracyOptions(width) {
    const c = colours();
    const series = [
      { label: 'epoch', value: epochValue },
      { label: 'train', stroke: c.train, width: 1.5, spanGaps: true, dash: [6, 4],
        points: { show: true, size: 7, fill: c.train, stroke: c.train }, value: accuracyValue },
      { label: 'test', stroke: c.test, width: 2, spanGaps: true,
        points: { show: true, size: 7, fill: c.test, stroke: c.test }, value: accuracyValue },
    ];
    for (const run of comparisons) {
      series.push({ label: run.label, stroke: run.colour, width: 1.5, spanGaps: true, dash: [2, 3],
        points: { show: true, size: 5, fill: run.colour, stroke: run.colour }, value: accuracyValue });
    }
    return {
      ...frameOptions(width),
      scales: {
        x: xScale(true),
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
        axis(c, 'accuracy', (u, splits) => splits.map((v) => `${Number((v * 100).toFixed(1))}%`)),
      ],
      series,
    };
  }

  // ----- smoothing: exponential moving average, bias-corrected like TensorBoard's -----
  function updateSmoothed() {
    if (smoothedValid > batchLoss.length) smoothedValid = 0;
    if (smoothed.length !== batchLoss.length) smoothed.length = batchLoss.length;
    let ema = 0;
    let weight = 0;
    // Restart from the last good point's state.
    if (smoothedValid > 0) {
      ema = smoothState.ema;
      weight = smoothState.weight;
    }
    for (let i = smoothedValid; i < batchLoss.length; i++) {
      const v = batchLoss[i];
      if (Number.isFinite(v)) {
        ema = smoothing * ema + (1 - smoothing) * v;
        weight = smoothing * weight + (1 - smoothing);
        smoothed[i] = weight > 0 ? ema / weight : v;
      } else {
        smoothed[i] = null;
      }
    }
    smoothState = { ema, weight };
    smoothedValid = batchLoss.length;
  }

  // ----- building the aligned data uPlot wants -----
  function lossData() {
    updateSmoothed();
    const ex = [...epochs.keys()].sort((a, b) => a - b);
    const xs = [];
    const raw = [];
    const smooth = [];
    const train = [];
    const test = [];
    let i = 0;
    let j = 0;
    while (i < batchX.length || j < ex.length) {
      const bx = i < batchX.length ? batchX[i] : Infinity;
      const epx = j < ex.length ? ex[j] : Infinity;
      xs.push(Math.min(bx, epx));
      if (bx <= epx) {
        raw.push(batchLoss[i]);
        smooth.push(smoothed[i]);
        i++;
      } else {
        raw.push(null);
        smooth.push(null);
      }
      if (epx <= bx) {
        const record = epochs.get(epx);
        train.push(record.train_loss ?? null);
        test.push(record.test_loss ?? null);
        j++;
      } else {
        train.push(null);
        test.push(null);
      }
    }
    if (logScale) {
      // A log axis has no room for zero or less.
      for (const series of [raw, smooth, train, test]) {
        for (let k = 0; k < series.length; k++) if (!(series[k] > 0)) series[k] = null;
      }
    }
    return [xs, raw, smooth, train, test];
  }

  function accuracyData() {
    const xsSet = new Set(epochs.keys());
    const lookups = comparisons.map((run) => new Map(run.points));
    for (const run of comparisons) for (const [e] of run.points) xsSet.add(e);
    const xs = [...xsSet].sort((a, b) => a - b);
    const data = [xs,
      xs.map((x) => epochs.get(x)?.train_accuracy ?? null),
      xs.map((x) => epochs.get(x)?.test_accuracy ?? null)];
    for (const lookup of lookups) data.push(xs.map((x) => lookup.get(x) ?? null));
    return data;
  }

  // ----- drawing -----
  function widthOf(el) {
    return Math.max(200, Math.floor(el.clientWidth));
  }

  function buildLoss() {
    if (lossChart) lossChart.destroy();
    lossChart = new uPlot(lossOptions(widthOf(lossEl)), lossData(), lossEl);
  }

  function buildAccuracy() {
    if (accuracyChart) accuracyChart.destroy();
    accuracyChart = new uPlot(accuracyOptions(widthOf(accuracyEl)), accuracyData(), accuracyEl);
    accuracySeriesKey = seriesKey();
  }

  const seriesKey = () => comparisons.map((run) => `${run.id}:${run.colour}`).join('|');

  // What changed since the last frame: batches only touch the loss chart.
  let lossDirty = true;
  let accuracyDirty = true;

  const draw = frameTask(() => {
    if (!lossChart) buildLoss();
    else if (lossDirty) lossChart.setData(lossData());
    if (!accuracyChart || accuracySeriesKey !== seriesKey()) buildAccuracy();
    else if (accuracyDirty) accuracyChart.setData(accuracyData());
    lossDirty = false;
    accuracyDirty = false;
    drawn = { loss: batchX.length, epochs: epochs.size, markers: markers.map((m) => ({ ...m })) };
    if (onLossSmoothed) {
      const last = smoothed.length ? smoothed[smoothed.length - 1] : null;
      onLossSmoothed(last);
    }
  });

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

  function redraw({ loss = true, accuracy = true } = {}) {
    lossDirty ||= loss;
    accuracyDirty ||= accuracy;
    draw();
  }

  function showSmoothing() {
    smoothingOutput.value = smoothing.toFixed(2);
    smoothingOutput.textContent = smoothing.toFixed(2);
  }
  smoothingInput.addEventListener('input', () => {
    const value = Number(smoothingInput.value);
    smoothing = Number.isFinite(value) ? Math.min(0.99, Math.max(0, value)) : 0;
    smoothedValid = 0;
    showSmoothing();
    redraw({ accuracy: false });
  });
  showSmoothing();

  if (logInput) {
    logInput.addEventListener('change', () => {
      logScale = logInput.checked;
      buildLoss(); // the scale's kind is fixed when a chart is made
      drawn = { ...drawn, loss: batchX.length, markers: markers.map((m) => ({ ...m })) };
    });
  }

  redraw();

  return {
    /** Forget the live run's data (a new run began). */
    reset({ run_id: id = null, config = null } = {}) {
      runId = id;
      epochsPlanned = config && Number.isFinite(config.epochs) ? config.epochs : 0;
      batchX.length = 0;
      batchLoss.length = 0;
      smoothed = [];
      smoothedValid = 0;
      epochs.clear();
      markers.length = 0;
      redraw();
    },
    runId: () => runId,
    adoptRun(id) {
      runId = id;
    },
    setPlannedEpochs(n) {
      if (Number.isFinite(n) && n > 0 && n !== epochsPlanned) {
        epochsPlanned = n;
        redraw();
      }
    },
    addBatch(b) {
      const x = stepX(b);
      if (!Number.isFinite(x)) return;
      const loss = Number.isFinite(b.loss) ? b.loss : null;
      const n = batchX.length;
      if (n === 0 || x > batchX[n - 1]) {
        batchX.push(x);
        batchLoss.push(loss);
      } else {
        // A replayed or late point: replace or insert in order, keeping the charts idempotent.
        const at = lowerBound(batchX, x);
        if (batchX[at] === x) batchLoss[at] = loss;
        else {
          batchX.splice(at, 0, x);
          batchLoss.splice(at, 0, loss);
        }
        smoothedValid = 0; // the running average past `at` is stale: recompute it
      }
      redraw({ accuracy: false });
    },
    /** A live change of the learning rate or momentum (a "hyperparameters" event): a
     *  marker where it took effect. Replayed events replace their own marker. */
    addMarker(change) {
      const x = stepX(change);
      if (!Number.isFinite(x)) return;
      const marker = { x, label: describeChange(change), learning_rate: change.learning_rate,
        momentum: change.momentum };
      const at = markers.findIndex((m) => m.x >= x);
      if (at === -1) markers.push(marker);
      else if (markers[at].x === x) markers[at] = marker;
      else markers.splice(at, 0, marker);
      redraw({ accuracy: false });
    },
    addEpoch(record) {
      if (!Number.isFinite(record.epoch)) return;
      epochs.set(record.epoch, record);
      if (Number.isFinite(record.epochs)) epochsPlanned = Math.max(epochsPlanned, record.epochs);
      redraw();
    },
    /** Earlier runs' test accuracy lines: [{id, label, colour, points: [[epoch, acc]]}]. */
    setComparisons(list) {
      comparisons = list;
      redraw({ loss: false });
    },
    /** Colours come from CSS: rebuild after a theme change. */
    restyle() {
      buildLoss();
      buildAccuracy();
    },
    /** The uPlot chart "loss" or "accuracy" (for a PNG export). */
    chart: (name) => (name === 'loss' ? lossChart : accuracyChart),
    lossMarkers: () => drawn.markers,
    lossPoints: () => drawn.loss,
    epochPoints: () => drawn.epochs,
  };
}
