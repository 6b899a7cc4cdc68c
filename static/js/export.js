// Downloads: a run's metrics as CSV or JSON, and a chart as a PNG image.
//
// The metrics are fetched with api() (so the server's token goes along, also when every
// read needs it: CNN_LIVE_TOKEN_READ) and saved from a Blob URL. A chart is uPlot's
// canvas, which is transparent and has no title or legend (uPlot's legend is HTML):
// the PNG is that canvas on the theme's card colour, with the chart's title above and
// a legend of the shown series below.

import { isUnavailable, setUnavailable } from './buttons.js';
import { api } from './api.js';
import { cssVar } from './format.js';

/** Save `blob` as a file called `filename` (a click on a download link to a Blob URL). */
export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  // The download has started by now; the URL is only needed until then.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Download one run's metrics: format "csv" or "json". Throws ApiError. */
export async function downloadMetrics(runId, format) {
  const payload = await api('GET', `/api/runs/${encodeURIComponent(runId)}/metrics.${format}`);
  // api() parses JSON answers; a CSV (a header line, never valid JSON) comes back as text.
  const text = typeof payload === 'string' ? payload : `${JSON.stringify(payload, null, 2)}\n`;
  const type = format === 'csv' ? 'text/csv' : 'application/json';
  saveBlob(new Blob([text], { type }), `cnn-live-${runId}.${format}`);
}

/** A series' colour: uPlot turns `stroke` into a function once the chart is made. */
function strokeOf(u, index) {
  const { stroke } = u.series[index];
  return typeof stroke === 'function' ? stroke(u, index) : stroke;
}

/** The legend's entries laid out in rows within `width`: [{label, colour, x, row}]. */
function legendLayout(ctx, entries, width, unit) {
  const swatch = 18 * unit;
  const gap = 16 * unit;
  let x = 0;
  let row = 0;
  return entries.map((entry) => {
    const size = swatch + 6 * unit + ctx.measureText(entry.label).width;
    if (x > 0 && x + size > width) {
      x = 0;
      row += 1;
    }
    const placed = { ...entry, x, row };
    x += size + gap;
    return placed;
  });
}

/** The chart `u` as a PNG Blob, titled `title`. */
export function chartPng(u, title) {
  const source = u.ctx.canvas;
  const unit = source.width / Math.max(1, u.width);   // device pixels per CSS pixel
  const pad = 14 * unit;
  const titleHeight = 24 * unit;
  const lineHeight = 20 * unit;
  const font = cssVar('--font', 'system-ui, sans-serif');

  const canvas = document.createElement('canvas');
  const ctx = canvas.getContext('2d');
  ctx.font = `${12 * unit}px ${font}`;
  const entries = [];
  u.series.forEach((series, index) => {
    if (index > 0 && series.show !== false) entries.push({ label: series.label, colour: strokeOf(u, index) });
  });
  const legend = legendLayout(ctx, entries, source.width, unit);
  const rows = legend.length ? legend[legend.length - 1].row + 1 : 0;

  canvas.width = source.width + 2 * pad;
  canvas.height = pad + titleHeight + source.height + rows * lineHeight + pad;
  ctx.fillStyle = cssVar('--surface', '#ffffff');
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = cssVar('--text', '#18202c');
  ctx.font = `600 ${14 * unit}px ${font}`;
  ctx.textBaseline = 'top';
  ctx.fillText(title, pad, pad);
  ctx.drawImage(source, pad, pad + titleHeight);

  ctx.font = `${12 * unit}px ${font}`;
  ctx.textBaseline = 'middle';
  const top = pad + titleHeight + source.height;
  for (const entry of legend) {
    const x = pad + entry.x;
    const y = top + entry.row * lineHeight + lineHeight / 2;
    ctx.strokeStyle = entry.colour || ctx.fillStyle;
    ctx.lineWidth = 3 * unit;
    ctx.beginPath();
    ctx.moveTo(x, y);
    ctx.lineTo(x + 18 * unit, y);
    ctx.stroke();
    ctx.fillStyle = cssVar('--muted', '#5b6576');
    ctx.fillText(entry.label, x + 24 * unit, y);
  }
  return new Promise((resolve, reject) => {
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error('The chart could not be drawn.'))), 'image/png');
  });
}

/** Download chart `u` as cnn-live-<run>-<name>.png. */
export async function downloadChart(u, { name, title, runId }) {
  const blob = await chartPng(u, runId ? `${title} · run ${runId}` : title);
  saveBlob(blob, `cnn-live-${runId || 'no-run'}-${name}.png`);
}

/** Wires the charts' PNG buttons (data-chart="loss" or "accuracy"). */
export function createChartDownloads({ buttons, charts }) {
  const titles = { loss: 'Loss', accuracy: 'Accuracy' };
  for (const button of buttons) {
    const name = button.dataset.chart;
    button.addEventListener('click', async () => {
      const u = charts.chart(name);
      if (!u || isUnavailable(button)) return;
      setUnavailable(button, true);
      try {
        await downloadChart(u, { name, title: titles[name] || name, runId: charts.runId() });
      } catch (error) {
        console.warn(`cnn-live: could not export the ${name} chart`, error);
      } finally {
        setUnavailable(button, false);
      }
    });
  }
}
