// The convolution filters: one <canvas class="filter-canvas" data-layer="INDEX"> per
// filter sent, grouped per conv layer. A filter with C input channels shows its C kernels
// (K x K each) side by side in a small grid inside its tile.
// Colours diverge around 0: blue negative, red positive, normalised per layer to the
// layer's largest |weight|. Each weight is drawn as an enlarged square; the canvas is
// displayed at its own size, with `image-rendering: pixelated` for crisp upscaling.
//
// The server sends each layer bounded (app/filter_images.py): `shape` [F, C, K, K] of
// the whole layer, `shown` [F', C'] of it in `levels` (at most 32 filters of 16
// channels), and `levels`, base64 of F' x C' x K x K bytes 0..255 over `low`..`high`.
// A wide layer's heading says so: "showing 32 of 128 filters".

import { shownTask } from './visibility.js';
import { cssVar, formatNumber, parseColour } from './format.js';

const TILE = 72;          // a filter tile's target size in CSS pixels
const GAP = 2;            // pixels between one channel's kernel and the next
const MAX_CHANNELS = 16;  // channels shown per filter

/** The diverging colours of weights (negative, zero, positive), from the CSS. */
export function palette() {
  return {
    negative: parseColour(cssVar('--filter-negative'), [33, 102, 172]),
    zero: parseColour(cssVar('--filter-zero'), [247, 247, 247]),
    positive: parseColour(cssVar('--filter-positive'), [178, 24, 43]),
  };
}

/** The colour of weight `t` (-1..1 of the layer's largest |weight|) as [r, g, b]. */
function colourFor(t, p) {
  const end = t < 0 ? p.negative : p.positive;
  const a = Math.min(1, Math.abs(t));
  return [0, 1, 2].map((i) => Math.round(p.zero[i] + (end[i] - p.zero[i]) * a));
}

/** The RGB of each of the 256 levels of a layer sent over `low`..`high`: a layer's
 *  weights are painted from this table (a filter is hundreds of squares). */
export function levelColours(low, high, colours) {
  const max = Math.max(Math.abs(low), Math.abs(high)) || 1;
  const step = (high - low) / 255;
  const table = new Uint8ClampedArray(256 * 3);
  for (let level = 0; level < 256; level++) {
    table.set(colourFor((low + level * step) / max, colours), level * 3);
  }
  return table;
}

/** Filter `f` of `layer` as the pixels of its canvas: each weight a `cell`-pixel square
 *  of its colour, its channels' kernels side by side with transparent gaps. */
function filterPixels(image, layer, f, geo, table) {
  const { kernel, channels, levels } = layer;
  const pixels = image.data;
  pixels.fill(0);
  for (let c = 0; c < geo.shown; c++) {
    const ox = (c % geo.cols) * (kernel * geo.cell + geo.gap);
    const oy = Math.floor(c / geo.cols) * (kernel * geo.cell + geo.gap);
    const start = (f * channels + c) * kernel * kernel;
    for (let y = 0; y < kernel; y++) {
      for (let x = 0; x < kernel; x++) {
        const at = levels[start + y * kernel + x] * 3;
        for (let py = oy + y * geo.cell; py < oy + (y + 1) * geo.cell; py++) {
          let i = (py * image.width + ox + x * geo.cell) * 4;
          for (let px = 0; px < geo.cell; px++, i += 4) {
            pixels[i] = table[at];
            pixels[i + 1] = table[at + 1];
            pixels[i + 2] = table[at + 2];
            pixels[i + 3] = 255;
          }
        }
      }
    }
  }
}

function decodeBytes(base64) {
  let text;
  try {
    text = atob(base64);
  } catch {
    return null;
  }
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/** A layer of the event as {layer, name, filters, channels, kernel (shown), total
 *  [F, C], low, high, levels (Uint8Array)}, or null when it is not one. */
function decodeLayer(layer) {
  if (!layer || !Array.isArray(layer.shape) || !Array.isArray(layer.shown)
      || typeof layer.levels !== 'string') return null;
  const [totalFilters, totalChannels, kernel] = layer.shape.map(Number);
  const [filters, channels] = layer.shown.map(Number);
  const levels = decodeBytes(layer.levels);
  if (!levels || !(filters > 0 && channels > 0 && kernel > 0)
      || levels.length !== filters * channels * kernel * kernel) return null;
  return {
    layer: layer.layer, name: layer.name, filters, channels, kernel,
    total: [totalFilters, totalChannels], low: Number(layer.low), high: Number(layer.high), levels,
  };
}

/** "showing 32 of 128 filters 3×3 · 64 input channels (first 16 shown)" */
function describe(decoded) {
  const { filters, channels, kernel, total: [totalFilters, totalChannels] } = decoded;
  const filterText = filters < totalFilters ? `showing ${filters} of ${totalFilters} filters`
    : `${totalFilters} filters`;
  const channelText = totalChannels === 1 ? '1 input channel'
    : channels < totalChannels ? `${totalChannels} input channels (first ${channels} shown)`
      : `${totalChannels} input channels`;
  return `${filterText} ${kernel}×${kernel} · ${channelText}`;
}

function geometry(channels, kernel) {
  const shown = Math.max(1, Math.min(channels, MAX_CHANNELS));
  // The squarest grid that leaves the fewest empty slots (8 channels: 4 x 2).
  let cols = Math.ceil(Math.sqrt(shown));
  for (let c = cols + 1, best = cols * Math.ceil(shown / cols) - shown; c <= 2 * Math.ceil(Math.sqrt(shown)) && best > 0; c++) {
    const waste = c * Math.ceil(shown / c) - shown;
    if (waste < best) {
      best = waste;
      cols = c;
    }
  }
  const rows = Math.ceil(shown / cols);
  const gap = cols > 1 ? GAP : 0;
  const cell = Math.max(2, Math.floor((TILE - (cols - 1) * gap) / (cols * Math.max(kernel, 1))));
  return {
    shown, cols, rows, gap, cell,
    width: cols * kernel * cell + (cols - 1) * gap,
    height: rows * kernel * cell + (rows - 1) * gap,
  };
}

function convLayersOf(spec) {
  if (!spec || !Array.isArray(spec.layers)) return null;
  return spec.layers.filter((layer) => layer && layer.type === 'conv');
}

export function createFilters({ container, stampEl }) {
  let pending = null;
  let last = null;        // the last event drawn (for a redraw after a theme change)
  let version = 0;
  let layoutKey = '';
  let views = [];         // per layer: {canvases, geo, low, high, image}
  let colours = null;     // the theme's palette, read once per theme (getComputedStyle)

  function message(text) {
    container.replaceChildren();
    const p = document.createElement('p');
    p.className = 'filters-empty';
    p.textContent = text;
    container.append(p);
    layoutKey = '';
    views = [];
  }

  function build(layers) {
    container.replaceChildren();
    views = layers.map((layer, position) => {
      const { filters, channels, kernel } = layer;
      const geo = geometry(channels, kernel);

      const group = document.createElement('div');
      group.className = 'filter-layer';
      group.dataset.layer = String(layer.layer);

      const head = document.createElement('div');
      head.className = 'filter-layer-head';
      const title = document.createElement('h3');
      title.className = 'filter-layer-title';
      title.textContent = `Conv layer ${position + 1}`;
      const meta = document.createElement('span');
      meta.className = 'filter-layer-meta';
      meta.textContent = `${layer.name || `layer ${layer.layer}`} · ${describe(layer)}`;
      title.append(' ', meta);

      const scale = document.createElement('div');
      scale.className = 'filter-scale';
      // A group: its low and high values are read, named as the colour scale.
      scale.setAttribute('role', 'group');
      scale.setAttribute('aria-label', 'colour scale');
      const low = document.createElement('span');
      const bar = document.createElement('span');
      bar.className = 'filter-scale-bar';
      const high = document.createElement('span');
      scale.append(low, bar, high);
      head.append(title, scale);

      const grid = document.createElement('div');
      grid.className = `filter-grid${geo.width > TILE * 1.2 ? ' filter-grid-wide' : ''}`;
      const canvases = [];
      for (let f = 0; f < filters; f++) {
        const canvas = document.createElement('canvas');
        canvas.className = 'filter-canvas';
        canvas.dataset.layer = String(layer.layer);
        canvas.dataset.filter = String(f);
        canvas.width = geo.width;
        canvas.height = geo.height;
        canvas.setAttribute('role', 'img');
        canvas.setAttribute('aria-label', `filter ${f + 1} of conv layer ${position + 1}`);
        canvas.title = `filter ${f + 1}`;
        grid.append(canvas);
        canvases.push(canvas);
      }
      group.append(head, grid);
      container.append(group);
      return { canvases, geo, low, high };
    });
  }

  function draw() {
    const event = pending;
    pending = null;
    if (!event || !Array.isArray(event.layers)) return;
    const layers = event.layers.map(decodeLayer).filter(Boolean);
    if (!layers.length) return;
    const key = layers.map((l) => `${l.layer}:${l.filters}x${l.channels}x${l.kernel}:${l.total}`)
      .join('|');
    if (key !== layoutKey) {
      build(layers);
      layoutKey = key;
    }
    colours ||= palette();
    layers.forEach((layer, i) => {
      const view = views[i];
      const max = Math.max(Math.abs(layer.low), Math.abs(layer.high)) || 1;
      view.low.textContent = `−${formatNumber(max, 2)}`;
      view.high.textContent = `+${formatNumber(max, 2)}`;
      const table = levelColours(layer.low, layer.high, colours);
      view.image ||= new ImageData(view.geo.width, view.geo.height);
      view.canvases.forEach((canvas, f) => {
        filterPixels(view.image, layer, f, view.geo, table);
        canvas.getContext('2d').putImageData(view.image, 0, 0);
      });
    });
    if (stampEl) {
      stampEl.textContent = Number.isFinite(event.epoch)
        ? `epoch ${event.epoch}${Number.isFinite(event.step) ? ` · step ${event.step}` : ''}` : '';
    }
    last = event;
    version += 1;
  }

  // Drawn only while it can be seen (visibility.js), and only the newest event.
  const request = shownTask(container, draw);

  return {
    /** A new run: clear the tiles; `spec` (if known) says whether there will be any;
     *  `text` says why there are none yet. */
    reset(spec, text = '') {
      pending = null;
      last = null;
      if (stampEl) stampEl.textContent = '';
      const convs = convLayersOf(spec);
      if (convs && convs.length === 0) {
        message('This network has no convolution layers, so it has no filters to show.');
      } else {
        message(text || 'Waiting for the first weights…');
      }
    },
    update(event) {
      pending = event;
      request();
    },
    restyle() {
      colours = null;
      if (last && !pending) {
        pending = last;
        version -= 1; // a restyle is not a new filter update
        request();
      }
    },
    version: () => version,
  };
}
