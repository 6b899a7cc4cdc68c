// Which lines each chart draws, per drawn run, and their data as uPlot wants it (one x
// column, one y column per line, aligned). Pure functions of the runs' series
// (chart-series.js) and their looks; charts.js draws them.
//
// Every drawn run has its own colour: on the loss chart its smoothed batch loss (solid)
// and test loss per epoch (dashed, dots), on the accuracy chart its test accuracy per
// epoch (solid, dots) and, when it was measured on them, its held-out drawings (issue
// 15). The selected run also shows its raw batch loss (faint) and its train figures
// (dotted).

import { parseColour } from './format.js';
import { align, decimate, epochColumn, updateSmoothed } from './chart-series.js';

// A line: {id, kind, label, options (uPlot's series options)}. Kinds and the epoch
// figure each epoch line reads.
const EPOCH_KEYS = {
  trainLoss: 'train_loss', testLoss: 'test_loss',
  trainAcc: 'train_accuracy', testAcc: 'test_accuracy', drawingsAcc: 'drawings_accuracy',
};

/** `colour` (#rrggbb or rgb()) at opacity `alpha`. */
function faded(colour, alpha) {
  const rgb = parseColour(colour, null);
  return rgb ? `rgba(${rgb.join(',')},${alpha})` : colour;
}

const hollowPoints = (colour) => ({ show: true, size: 6, fill: 'transparent', stroke: colour });
const filledPoints = (colour) => ({ show: true, size: 7, fill: colour, stroke: colour });

/** The loss chart's lines. `looks`: per drawn run {id, label, colour}, in order. */
export function lossLines(looks, selected) {
  const lines = [];
  for (const { id, label, colour } of looks) {
    const main = id === selected;
    if (main) {
      lines.push({ id, kind: 'raw', label: `${label} · batch`,
        options: { stroke: faded(colour, 0.28), width: 1 } });
    }
    lines.push({ id, kind: 'smooth', label, options: { stroke: colour, width: main ? 2.5 : 2 } });
    if (main) {
      lines.push({ id, kind: 'trainLoss', label: `${label} · train`,
        options: { stroke: colour, width: 1.5, dash: [2, 3], points: hollowPoints(colour) } });
    }
    lines.push({ id, kind: 'testLoss', label: `${label} · test`,
      options: { stroke: colour, width: 1.5, dash: [6, 4], points: filledPoints(colour) } });
  }
  return lines;
}

/** The accuracy chart's lines; `hasDrawings(id)`: whether run `id` was measured on
 *  people's held-out drawings. */
export function accuracyLines(looks, selected, hasDrawings) {
  const lines = [];
  for (const { id, label, colour } of looks) {
    lines.push({ id, kind: 'testAcc', label: `${label} · test`,
      options: { stroke: colour, width: id === selected ? 2.5 : 2, points: filledPoints(colour) } });
    if (id === selected) {
      lines.push({ id, kind: 'trainAcc', label: `${label} · train`,
        options: { stroke: colour, width: 1.5, dash: [2, 3], points: hollowPoints(colour) } });
    }
    // Its held-out drawings (issue 15), when it was measured on them.
    if (hasDrawings(id)) {
      lines.push({ id, kind: 'drawingsAcc', label: `${label} · your drawings`,
        options: { stroke: colour, width: 2, dash: [9, 3, 2, 3],
          points: { show: true, size: 9, width: 2, fill: 'transparent', stroke: colour } } });
    }
  }
  return lines;
}

/**
 * The loss chart's data. Long batch series are thinned to `maxPoints` (two points per
 * pixel of the chart's width: more cannot be seen); on a log scale, values of zero or
 * less become gaps (a log axis has no room for them).
 * @param {object[]} lines  lossLines()
 * @param {(id: string) => object} seriesOf  a run's series (chart-series.js newSeries)
 */
export function lossData(lines, seriesOf, { maxPoints, smoothing, logScale }) {
  const columns = lines.map((line) => {
    const s = seriesOf(line.id);
    if (line.kind === 'raw') return decimate(s.batchX, s.batchLoss, maxPoints, true);
    if (line.kind === 'smooth') {
      updateSmoothed(s, smoothing);
      return decimate(s.batchX, s.smoothed, maxPoints);
    }
    return epochColumn(s, EPOCH_KEYS[line.kind]);
  });
  const data = align(columns);
  if (logScale) {
    for (let k = 1; k < data.length; k++) {
      const ys = data[k];
      for (let i = 0; i < ys.length; i++) if (!(ys[i] > 0)) ys[i] = null;
    }
  }
  return data;
}

/** The accuracy chart's data (accuracyLines()). */
export function accuracyData(lines, seriesOf) {
  return align(lines.map((line) => epochColumn(seriesOf(line.id), EPOCH_KEYS[line.kind])));
}
