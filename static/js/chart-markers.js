// Live changes of the learning rate or momentum (a "hyperparameters" event), marked on
// the loss chart: a dashed vertical line where each took effect, labelled "lr a → b".

import { formatNumber } from './format.js';

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
export function drawMarkers(u, markers, colour, font) {
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
