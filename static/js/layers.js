// The layer view: what every layer of the network makes of the current drawing, in
// order, from the 28x28 input to the ten probabilities, as one column of stages:
//
//   input 1x28x28 -> conv (each map beside the filter that made it) -> activation ->
//   pool -> ... -> flatten (the maps in one row) -> dense vectors (bar strips) -> output
//
// It draws the answer of POST /api/predict with explain: `input`, `feature_maps` (every
// conv, activation and pool layer, with `filters` on a conv), `vectors` (every layer
// after the flatten, the last being the ten scores) and `probabilities`. A layer in
// neither list (the flatten) is shown from what the layers around it say.
//
// The server sends at most 32 maps a layer, each averaged down to 28x28, and the first
// 256 values of a vector (fewer maps once a deep network's answer is large): a stage
// says what it shows, "showing 16 of 512 maps · averaged down to 26×26".

import { formatNumber, formatPercent } from './format.js';

const MAX_CHANNELS = 32;        // feature maps shown per layer
const MAX_FILTER_CHANNELS = 16;
const VECTOR_WIDTH = 256;       // CSS pixels of a vector's bar strip at most
const VECTOR_HEIGHT = 44;
const LABELLED_VECTOR = 16;     // vectors this short get their index under each bar

const NOTES = {
  input: 'The drawing, cropped, scaled and centred like an MNIST digit: the only thing the network sees.',
  conv: 'Each map is the layer above filtered by the kernel beside it (blue negative, red positive, one small kernel per input channel); dark is high.',
  relu: 'ReLU: every negative value becomes 0; only what a filter found is kept.',
  sigmoid: 'Sigmoid: every value squashed into 0..1.',
  tanh: 'Tanh: every value squashed into -1..1.',
  maxpool: 'Max-pooling: the largest value of each block, so the maps get smaller and a shift matters less.',
  flatten: 'Flatten: the maps above laid out in one row of numbers, the input of the dense layers.',
  dense: 'Dense: each value is a weighted sum of every value of the layer above (blue negative, red positive).',
  scores: 'The ten scores, one per digit: the largest wins.',
  output: 'The probability of each digit: the network\'s answer.',
};

function isMaps(layer) {
  return layer && Array.isArray(layer.maps) && layer.maps.length
    && Array.isArray(layer.maps[0]) && Array.isArray(layer.maps[0][0]);
}

function isVector(layer) {
  return layer && Array.isArray(layer.values) && layer.values.length > 0 && Number.isInteger(layer.layer);
}

function shapeOf(stage) {
  if (Array.isArray(stage.shape)) return stage.shape;
  const maps = stage.maps;
  return [maps.length, maps[0]?.length ?? 0, maps[0]?.[0]?.length ?? 0];
}

/**
 * The stages to show for a prediction answer, in order (pure: no DOM).
 * Each: {type: 'input'|'maps'|'flatten'|'layer'|'vector'|'output', layer, name, kind, ...}.
 */
export function pipelineStages(answer) {
  const stages = [];
  if (Array.isArray(answer?.input)) {
    stages.push({ type: 'input', layer: null, name: 'input', kind: 'input', shape: [1, answer.input.length, answer.input[0]?.length ?? 0], maps: [answer.input] });
  }
  const maps = (Array.isArray(answer?.feature_maps) ? answer.feature_maps : []).filter(isMaps)
    .map((l) => ({ type: 'maps', ...l, shape: shapeOf(l) }));
  const vectors = (Array.isArray(answer?.vectors) ? answer.vectors : []).filter(isVector)
    .map((l) => ({ type: 'vector', ...l })).sort((a, b) => a.layer - b.layer);
  const layers = [...maps, ...vectors].sort((a, b) => a.layer - b.layer);
  if (vectors.length) vectors[vectors.length - 1].isScores = true;

  // Layers neither list has: the one just before the first vector is the flatten.
  const firstVector = vectors.length ? vectors[0].layer : null;
  let previous = -1;
  let lastMaps = stages[0] || null;
  for (const layer of layers) {
    for (let i = previous + 1; i < layer.layer; i++) {
      if (i === firstVector - 1) {
        const size = lastMaps ? shapeOf(lastMaps).reduce((a, b) => a * b, 1) : 0;
        stages.push({ type: 'flatten', layer: i, name: `${i}.flatten`, kind: 'flatten', size, from: lastMaps });
      } else {
        stages.push({ type: 'layer', layer: i, name: `${i}`, kind: 'layer' });
      }
    }
    stages.push(layer);
    if (layer.type === 'maps') lastMaps = layer;
    previous = layer.layer;
  }
  if (Array.isArray(answer?.probabilities) && answer.probabilities.length) {
    stages.push({ type: 'output', layer: null, name: 'output', kind: 'output', probabilities: answer.probabilities, digit: answer.digit });
  }
  return stages;
}

// ----- painting -----

/** Paint `values` (H x W, any range) into `canvas` as ink of alpha 0..1, min..max when
 *  `normalise`, else taken as 0..1 already. */
export function paintMap(canvas, values, ink, normalise) {
  const h = values.length;
  const w = values[0]?.length ?? 0;
  if (!h || !w) return;
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
  let low = 0;
  let high = 1;
  if (normalise) {
    low = Infinity;
    high = -Infinity;
    for (const row of values) for (const v of row) {
      if (v < low) low = v;
      if (v > high) high = v;
    }
  }
  const range = high - low;
  const ctx = canvas.getContext('2d');
  const image = ctx.createImageData(w, h);
  const data = image.data;
  for (let y = 0; y < h; y++) {
    const row = values[y];
    for (let x = 0; x < w; x++) {
      const v = row[x];
      const t = Number.isFinite(v) && range > 1e-12 ? (v - low) / range : 0;
      const i = (y * w + x) * 4;
      data[i] = ink[0];
      data[i + 1] = ink[1];
      data[i + 2] = ink[2];
      data[i + 3] = Math.round(Math.min(1, Math.max(0, t)) * 255);
    }
  }
  ctx.putImageData(image, 0, 0);
}

function diverging(t, palette) {
  const end = t < 0 ? palette.negative : palette.positive;
  const a = Math.min(1, Math.abs(t));
  return palette.zero.map((z, j) => Math.round(z + (end[j] - z) * a));
}

/** A conv filter C x K x K: its (first 16) channels' kernels in a grid, 1 px apart. */
function paintFilter(canvas, filter, max, palette) {
  const channels = Math.min(filter.length, MAX_FILTER_CHANNELS);
  const k = filter[0]?.length ?? 0;
  if (!channels || !k) return;
  const cols = Math.ceil(Math.sqrt(channels));
  const rows = Math.ceil(channels / cols);
  const w = cols * (k + 1) - 1;
  const h = rows * (k + 1) - 1;
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
  const ctx = canvas.getContext('2d');
  const image = ctx.createImageData(w, h);
  const data = image.data;
  for (let c = 0; c < channels; c++) {
    const ox = (c % cols) * (k + 1);
    const oy = Math.floor(c / cols) * (k + 1);
    for (let y = 0; y < k; y++) {
      for (let x = 0; x < k; x++) {
        const wgt = filter[c][y]?.[x];
        const rgb = diverging(Number.isFinite(wgt) ? wgt / max : 0, palette);
        const i = ((oy + y) * w + ox + x) * 4;
        data.set([...rgb, 255], i);
      }
    }
  }
  ctx.putImageData(image, 0, 0);
}

function maxAbs(values) {
  let max = 0;
  const visit = (v) => {
    if (Array.isArray(v)) v.forEach(visit);
    else if (Number.isFinite(v) && Math.abs(v) > max) max = Math.abs(v);
  };
  visit(values);
  return max || 1;
}

function barWidth(n) {
  return Math.max(2, Math.min(24, Math.floor(VECTOR_WIDTH / n)));
}

/** One bar per value: up from a baseline (at the bottom when none is negative, in the
 *  middle otherwise), coloured by sign, scaled to the largest |value|. */
function paintVector(canvas, values, palette) {
  const bar = barWidth(values.length);
  const width = bar * values.length;
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(VECTOR_HEIGHT * ratio);
  canvas.style.width = `${width}px`;  // CSSOM (allowed by the CSP), not a style attribute
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, VECTOR_HEIGHT);
  const max = maxAbs(values);
  const signed = values.some((v) => v < 0);
  const base = signed ? VECTOR_HEIGHT / 2 : VECTOR_HEIGHT - 1;
  const reach = signed ? VECTOR_HEIGHT / 2 - 1 : VECTOR_HEIGHT - 2;
  values.forEach((v, i) => {
    const t = Number.isFinite(v) ? v / max : 0;
    ctx.fillStyle = `rgb(${diverging(t, palette).join(',')})`;
    const h = Math.max(1, Math.abs(t) * reach);
    ctx.fillRect(i * bar + (bar > 3 ? 0.5 : 0), t < 0 ? base : base - h, Math.max(1, bar - (bar > 3 ? 1 : 0)), h);
  });
  ctx.fillStyle = `rgb(${palette.axis.join(',')})`;
  ctx.fillRect(0, Math.round(base), width, 1);
}

/** The maps above, flattened, as one strip of ink (one pixel per value). */
function paintFlatten(canvas, from, ink) {
  const values = [];
  for (const map of from.maps) for (const row of map) for (const v of row) values.push(v);
  if (values.length) paintMap(canvas, [values], ink, true);
}

// ----- the DOM of each stage -----

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

function stageTitle(stage, position) {
  const title = element('h4', 'fmap-layer-title');
  const number = element('span', 'stage-number', `${position + 1}`);
  title.append(number, ' ', stage.name);
  const meta = element('span', 'fmap-layer-meta', stageMeta(stage));
  title.append(' ', meta);
  return title;
}

/** What part of a layer's maps a stage shows: "showing 16 of 512 maps · averaged
 *  down to 26×26", or '' when it shows them all as they are. */
export function mapsShownText(stage) {
  const total = Number.isInteger(stage.total_maps) ? stage.total_maps : stage.maps.length;
  const shown = Math.min(stage.maps.length, MAX_CHANNELS);
  const parts = [];
  if (shown < total) parts.push(`showing ${shown} of ${total} maps`);
  if (stage.downsampled && stage.maps.length) {
    parts.push(`averaged down to ${stage.maps[0].length}×${stage.maps[0][0]?.length ?? 0}`);
  }
  return parts.join(' · ');
}

function stageMeta(stage) {
  switch (stage.type) {
    case 'input':
    case 'maps': {
      const [c, h, w] = stage.shape;
      const kind = stage.type === 'maps' ? `${stage.kind} · ` : '';
      const shown = mapsShownText(stage);
      return `${kind}${c}×${h}×${w}${shown ? ` (${shown})` : ''}`;
    }
    case 'flatten': return `${stage.size} values`;
    case 'vector': {
      const total = Number.isInteger(stage.total_values) ? stage.total_values : stage.values.length;
      const shown = stage.values.length < total ? ` (showing the first ${stage.values.length})` : '';
      return `${stage.kind} · ${total} values${shown}`;
    }
    case 'output': return `${stage.probabilities.length} probabilities`;
    default: return '';
  }
}

function noteFor(stage) {
  if (stage.type === 'vector') {
    if (stage.isScores && stage.kind === 'dense') return NOTES.scores;
    return NOTES[stage.kind] || '';
  }
  if (stage.type === 'maps') return NOTES[stage.kind] || '';
  return NOTES[stage.type] || '';
}

/** A stage's element and how to paint data into it. */
function buildStage(stage, position) {
  const li = element('li', `stage stage-${stage.type}${stage.type === 'maps' ? ' fmap-layer' : ''}`);
  li.dataset.kind = stage.kind;
  li.dataset.name = stage.name;
  if (stage.layer !== null) li.dataset.layer = String(stage.layer);
  li.append(stageTitle(stage, position));
  const note = noteFor(stage);
  if (note) li.append(element('p', 'stage-note', note));
  const builders = { input: mapsBody, maps: mapsBody, flatten: flattenBody, vector: vectorBody, output: outputBody };
  const body = (builders[stage.type] || (() => ({ el: null, paint() {} })))(stage);
  if (body.el) li.append(body.el);
  return { li, paint: body.paint };
}

function mapsBody(stage) {
  const grid = element('div', 'fmap-grid');
  const shown = Math.min(stage.maps.length, MAX_CHANNELS);
  const maps = [];
  const filters = [];
  const withFilters = Array.isArray(stage.filters);
  for (let c = 0; c < shown; c++) {
    const item = element('div', 'fmap');
    const map = element('canvas', 'fmap-canvas');
    if (stage.layer !== null) map.dataset.layer = String(stage.layer);
    map.dataset.channel = String(c);
    map.setAttribute('role', 'img');
    map.setAttribute('aria-label', stage.type === 'input' ? 'the 28 by 28 input'
      : `${stage.name} channel ${c + 1}`);
    item.append(map);
    maps.push(map);
    if (withFilters) {
      const filter = element('canvas', 'fmap-filter');
      filter.setAttribute('role', 'img');
      filter.setAttribute('aria-label', `the filter that made channel ${c + 1}`);
      item.append(filter);
      filters.push(filter);
    }
    grid.append(item);
  }
  return {
    el: grid,
    paint(data, palette) {
      maps.forEach((canvas, c) => paintMap(canvas, data.maps[c], palette.ink, data.type !== 'input'));
      if (withFilters && Array.isArray(data.filters)) {
        const max = maxAbs(data.filters);
        filters.forEach((canvas, c) => {
          if (Array.isArray(data.filters[c])) paintFilter(canvas, data.filters[c], max, palette);
        });
      }
    },
  };
}

function flattenBody(stage) {
  if (!stage.from || stage.from.type === 'input') return { el: null, paint() {} };
  const canvas = element('canvas', 'stage-flatten-strip');
  canvas.setAttribute('role', 'img');
  canvas.setAttribute('aria-label', `the ${stage.size} values of ${stage.from.name} in one row`);
  return { el: canvas, paint: (data, palette) => paintFlatten(canvas, data.from, palette.ink) };
}

function vectorBody(stage) {
  const wrap = element('div', 'stage-vector-body');
  const canvas = element('canvas', 'vector-canvas');
  canvas.setAttribute('role', 'img');
  wrap.append(canvas);
  let labels = null;
  const n = stage.values.length;
  if (n <= LABELLED_VECTOR) {
    labels = element('div', 'vector-labels');
    for (let i = 0; i < n; i++) labels.append(element('span', '', String(i)));
    labels.style.width = `${barWidth(n) * n}px`;
    labels.style.setProperty('--n', String(n));
    wrap.append(labels);
  }
  return {
    el: wrap,
    paint(data, palette) {
      paintVector(canvas, data.values, palette);
      const low = Math.min(...data.values);
      const high = Math.max(...data.values);
      canvas.setAttribute('aria-label', n <= LABELLED_VECTOR
        ? `${data.name}: ${data.values.map((v, i) => `${i}: ${formatNumber(v, 3)}`).join(', ')}`
        : `${data.name}: ${n} values from ${formatNumber(low, 3)} to ${formatNumber(high, 3)}`);
    },
  };
}

function outputBody(stage) {
  const list = element('ol', 'output-bars');
  const rows = stage.probabilities.map((_, digit) => {
    const li = element('li', 'output-bar');
    li.dataset.digit = String(digit);
    const bar = element('span', 'output-column');
    const fill = element('span', 'output-fill');
    bar.append(fill);
    li.append(bar, element('span', 'output-digit', String(digit)));
    list.append(li);
    return { li, fill };
  });
  return {
    el: list,
    paint(data) {
      rows.forEach(({ li, fill }, digit) => {
        const p = Number(data.probabilities[digit]);
        const known = Number.isFinite(p);
        fill.style.setProperty('--p', known ? String(Math.max(0, Math.min(1, p))) : '0');
        li.classList.toggle('is-top', digit === data.digit);
        li.setAttribute('aria-label', `digit ${digit}: ${known ? formatPercent(p, 1) : 'unknown'}`);
        li.title = li.getAttribute('aria-label');
      });
    },
  };
}

function stageKey(stage) {
  const extra = stage.type === 'maps' ? `${stage.shape.join('x')}:${Array.isArray(stage.filters)}`
    : stage.type === 'vector' ? `${stage.values.length}:${Boolean(stage.isScores)}`
      : stage.type === 'flatten' ? `${stage.size}` : '';
  return `${stage.type}:${stage.name}:${extra}`;
}

/**
 * @param {object} options
 * @param {HTMLElement} options.container  where the stages go (an <ol class="pipeline"> is made)
 * @param {() => object} options.colours   {ink, negative, zero, positive, axis} as [r, g, b]
 */
export function createLayerView({ container, colours }) {
  const emptyText = container.textContent.trim() || 'Lift the pen after drawing to see every layer.';
  let key = '';
  let views = [];
  let stages = [];
  let last = null;

  function empty(text = emptyText) {
    const p = element('p', 'draw-empty', text);
    container.replaceChildren(p);
    key = '';
    views = [];
    stages = [];
    last = null;
  }

  function show(answer) {
    const next = pipelineStages(answer);
    if (!next.some((s) => s.type === 'maps' || s.type === 'vector')) {
      empty('This model gave no layer outputs to show.');
      return;
    }
    const nextKey = next.map(stageKey).join('|');
    if (nextKey !== key) {
      const list = element('ol', 'pipeline');
      list.setAttribute('aria-label', 'The network layer by layer, from the input to the answer');
      views = next.map((stage, i) => {
        const view = buildStage(stage, i);
        list.append(view.li);
        return view;
      });
      container.replaceChildren(list);
      key = nextKey;
    }
    const palette = colours();
    next.forEach((stage, i) => views[i].paint(stage, palette));
    stages = next;
    last = answer;
  }

  return {
    show,
    clear: () => empty(),
    restyle() {
      if (last) show(last);
    },
    /** For the tests: the stages shown, in order. */
    stages: () => stages.map((s) => ({ type: s.type, kind: s.kind, name: s.name, layer: s.layer })),
  };
}
