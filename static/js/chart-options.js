// How the two charts look, as uPlot options: size, axes, scales, legend, colours from
// the CSS. charts.js builds a chart from these and the lines of chart-lines.js.

import uPlot from '../vendor/uplot/uPlot.esm.js';
import { cssVar, formatNumber, formatPercent } from './format.js';
import { drawMarkers } from './chart-markers.js';

// The two charts' cursors move together (x is in epochs on both).
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
export function chartHeight(width) {
  return Math.round(Math.min(320, Math.max(210, width * 0.6)));
}

/** Size, cursor, legend and the x scale (0 to `xMax()` epochs): the same for both. */
function frame(width, xMax) {
  return {
    width,
    height: chartHeight(width),
    cursor: { sync: { key: SYNC_KEY }, drag: { x: false, y: false }, points: { size: 7 } },
    legend: { live: true },
    x: { time: false, range: () => [0, xMax()] },
  };
}

function uSeries(lines, value) {
  return [{ label: 'epoch', value: epochValue },
    ...lines.map((line) => ({ label: line.label, spanGaps: true, points: { show: false },
      value, ...line.options }))];
}

const lossAxis = (u, splits) => splits.map((v) => (v == null ? '' : formatNumber(v, 3)));
const accuracyAxis = (u, splits) => splits.map((v) => (v == null ? '' : `${Number((v * 100).toFixed(1))}%`));

/**
 * The loss chart's options.
 * @param {object} options
 * @param {number} options.width
 * @param {object[]} options.lines  chart-lines.js lossLines()
 * @param {() => number} options.xMax  the x range's end, asked at each redraw
 * @param {boolean} options.logScale
 * @param {() => object[]} options.markers  the live changes to mark, asked at each redraw
 */
export function lossOptions({ width, lines, xMax, logScale, markers }) {
  const c = colours();
  const { x, ...rest } = frame(width, xMax);
  return {
    ...rest,
    hooks: { setLegend: [legendFollowsCursor], draw: [(u) => drawMarkers(u, markers(), c.marker, c.font)] },
    scales: {
      x,
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
    axes: [axis(c, 'epoch', null, true), axis(c, 'loss', lossAxis)],
    series: uSeries(lines, lossValue),
  };
}

/** The accuracy chart's options (`lines`: chart-lines.js accuracyLines()). */
export function accuracyOptions({ width, lines, xMax }) {
  const c = colours();
  const { x, ...rest } = frame(width, xMax);
  return {
    ...rest,
    hooks: { setLegend: [legendFollowsCursor] },
    scales: {
      x,
      y: {
        range: (u, min, max) => {
          if (min == null || max == null || !Number.isFinite(min)) return [0, 1];
          // Zoom in on the interesting top, in steps of 5 points, never past 100%.
          const low = Math.max(0, Math.floor((min - 0.01) * 20) / 20);
          return [Math.min(low, 0.9), 1];
        },
      },
    },
    axes: [axis(c, 'epoch', null, true), axis(c, 'accuracy', accuracyAxis)],
    series: uSeries(lines, accuracyValue),
  };
}
