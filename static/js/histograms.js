// Histograms of each layer's weights and of their last gradients, from the `histograms`
// event (once at the start of a run, then after every epoch). Each is a small canvas:
// bars for now, a line for the start of the run on the same edges (for the gradients:
// their first epoch), so a learner sees the weights spread out or narrow as they learn.
//
// Like the evaluation, each event is the whole picture: only the newest one is drawn.

import { shownTask } from './visibility.js';
import { cssVar, formatInteger, formatNumber } from './format.js';

const WIDTH = 260;    // CSS pixels of a chart's drawing; the canvas scales down to fit
const HEIGHT = 84;
const AXIS = 14;      // pixels under the bars for the edge labels

function isHistogram(h) {
  return h && Array.isArray(h.edges) && Array.isArray(h.counts)
    && h.counts.length > 0 && h.edges.length === h.counts.length + 1;
}

/** "8×1×3×3" */
function shapeText(shape) {
  return Array.isArray(shape) ? shape.join('×') : '';
}

/** A short sentence for screen readers: the range, where most values lie, the start. */
export function describeHistogram(h, what, startWord) {
  const counts = h.counts;
  const total = counts.reduce((a, b) => a + b, 0);
  let peak = 0;
  counts.forEach((c, i) => { if (c > counts[peak]) peak = i; });
  const low = h.edges[0];
  const high = h.edges[h.edges.length - 1];
  const mode = `${formatNumber(h.edges[peak], 2)} to ${formatNumber(h.edges[peak + 1], 2)}`;
  const start = Array.isArray(h.start_counts) ? `, drawn against ${startWord}` : '';
  return `${what}: ${formatInteger(total)} values from ${formatNumber(low, 3)} to ${formatNumber(high, 3)}, most between ${mode}${start}`;
}

function colours() {
  return {
    now: cssVar('--chart-loss', '#2563eb'),
    start: cssVar('--chart-train', '#d97706'),
    axis: cssVar('--chart-axis', '#5b6576'),
    grid: cssVar('--chart-grid', 'rgba(0,0,0,0.08)'),
    font: '10px system-ui, sans-serif',
  };
}

/** Bars of `h.counts` and a step line of `h.start_counts`, on one linear scale. */
export function paintHistogram(canvas, h, palette) {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(WIDTH * ratio);
  canvas.height = Math.round(HEIGHT * ratio);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, WIDTH, HEIGHT);
  const bins = h.counts.length;
  const start = Array.isArray(h.start_counts) && h.start_counts.length === bins ? h.start_counts : null;
  const top = Math.max(1, ...h.counts, ...(start || []));
  const plotHeight = HEIGHT - AXIS - 2;
  const binWidth = WIDTH / bins;
  const y = (count) => 2 + plotHeight * (1 - count / top);

  ctx.fillStyle = palette.now;
  ctx.globalAlpha = 0.75;
  h.counts.forEach((count, i) => {
    if (count <= 0) return;
    const barTop = Math.min(y(count), plotHeight + 1);   // a single value still shows
    ctx.fillRect(i * binWidth + 0.5, barTop, Math.max(1, binWidth - 1), plotHeight + 2 - barTop);
  });
  ctx.globalAlpha = 1;

  if (start) {
    ctx.strokeStyle = palette.start;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    start.forEach((count, i) => {
      const yy = y(count);
      if (i === 0) ctx.moveTo(0, yy);
      else ctx.lineTo(i * binWidth, yy);
      ctx.lineTo((i + 1) * binWidth, yy);
    });
    ctx.stroke();
  }

  // The axis: a baseline, zero where it lies inside, and both ends' values.
  const low = h.edges[0];
  const high = h.edges[bins];
  ctx.fillStyle = palette.grid;
  ctx.fillRect(0, plotHeight + 2, WIDTH, 1);
  if (low < 0 && high > 0) {
    const x0 = (-low / (high - low)) * WIDTH;
    ctx.fillStyle = palette.axis;
    ctx.fillRect(Math.round(x0), 2, 1, plotHeight);
  }
  ctx.fillStyle = palette.axis;
  ctx.font = palette.font;
  ctx.textBaseline = 'bottom';
  ctx.textAlign = 'left';
  ctx.fillText(formatNumber(low, 2), 1, HEIGHT);
  ctx.textAlign = 'right';
  ctx.fillText(formatNumber(high, 2), WIDTH - 1, HEIGHT);
  if (low < 0 && high > 0) {
    ctx.textAlign = 'center';
    const x0 = (-low / (high - low)) * WIDTH;
    if (x0 > 28 && x0 < WIDTH - 28) ctx.fillText('0', x0, HEIGHT);
  }
}

export function createHistograms({ container, stampEl }) {
  const emptyText = container.textContent.trim() || 'The histograms appear when a run starts.';
  let pending = null;
  let shown = null;
  let layoutKey = '';
  let views = [];         // per layer: {weights: {canvas, note}, gradients: {canvas, note}}
  let version = 0;

  function message(text) {
    const p = document.createElement('p');
    p.className = 'evaluate-empty';
    p.textContent = text;
    container.replaceChildren(p);
    layoutKey = '';
    views = [];
  }

  function chart(kind, layerName) {
    const figure = document.createElement('figure');
    figure.className = `hist hist-${kind}`;
    const canvas = document.createElement('canvas');
    canvas.className = 'hist-canvas';
    canvas.dataset.kind = kind;
    canvas.setAttribute('role', 'img');
    canvas.setAttribute('aria-label', `${layerName} ${kind}`);
    const caption = document.createElement('figcaption');
    const title = document.createElement('span');
    title.className = 'hist-title';
    title.textContent = kind;
    const note = document.createElement('span');
    note.className = 'hist-note';
    caption.append(title, ' ', note);
    const missing = document.createElement('p');
    missing.className = 'hist-missing';
    missing.hidden = true;
    figure.append(caption, canvas, missing);
    return { figure, canvas, note, missing };
  }

  function build(layers) {
    container.replaceChildren();
    views = layers.map((layer) => {
      const group = document.createElement('section');
      group.className = 'hist-layer';
      group.dataset.layer = String(layer.layer);
      group.dataset.name = layer.name || '';
      const title = document.createElement('h3');
      title.className = 'hist-layer-title';
      title.textContent = layer.name || `layer ${layer.layer}`;
      const meta = document.createElement('span');
      meta.className = 'hist-layer-meta';
      meta.textContent = shapeText(layer.shape) ? `weights ${shapeText(layer.shape)}` : '';
      title.append(' ', meta);
      const weights = chart('weights', title.textContent);
      const gradients = chart('gradients', title.textContent);
      const charts = document.createElement('div');
      charts.className = 'hist-charts';
      charts.append(weights.figure, gradients.figure);
      group.append(title, charts);
      container.append(group);
      return { weights, gradients };
    });
  }

  function paintOne(view, h, name, what, startWord, missingText, palette) {
    const known = isHistogram(h);
    view.canvas.hidden = !known;
    view.missing.hidden = known;
    view.missing.textContent = known ? '' : missingText;
    view.note.textContent = known && Array.isArray(h.start_counts) ? `now vs ${startWord}` : '';
    view.canvas.dataset.drawn = known ? 'true' : 'false';
    if (!known) return;
    paintHistogram(view.canvas, h, palette);
    view.canvas.setAttribute('aria-label', describeHistogram(h, `${name} ${what}`, startWord));
  }

  /** Paint `event` (its layout built when it differs from the one shown). */
  function paint(event) {
    const layers = event.layers.filter((l) => l && isHistogram(l.weights));
    if (!layers.length) {
      message('This network has no weights to show.');
      return;
    }
    const key = layers.map((l) => `${l.layer}:${l.name}:${shapeText(l.shape)}`).join('|');
    if (key !== layoutKey) {
      build(layers);
      layoutKey = key;
    }
    const palette = colours();
    layers.forEach((layer, i) => {
      const name = layer.name || `layer ${layer.layer}`;
      paintOne(views[i].weights, layer.weights, name, 'weights', 'the start', '', palette);
      paintOne(views[i].gradients, layer.gradients, name, 'gradients', 'the first epoch',
        'Gradients appear after the first epoch.', palette);
    });
    if (stampEl) {
      stampEl.textContent = Number.isFinite(event.epoch)
        ? (event.epoch === 0 ? 'start of the run' : `epoch ${event.epoch}`) : '';
    }
  }

  // Drawn only while its section shows (a phone shows one at a time).
  const request = shownTask(container, () => {
    const event = pending;
    pending = null;
    if (!event || !Array.isArray(event.layers)) return;
    paint(event);
    shown = event;
    version += 1;
  });

  return {
    reset(text = '') {
      pending = null;
      shown = null;
      if (stampEl) stampEl.textContent = '';
      message(text || emptyText);
    },
    update(event) {
      pending = event;
      request();
    },
    /** The same histograms in the theme's colours (a newer event on its way will be). */
    restyle() {
      if (shown && !pending) paint(shown);
    },
    state: () => ({
      version,
      runId: shown?.run_id ?? null,
      epoch: shown?.epoch ?? null,
      layers: views.length,
    }),
  };
}
