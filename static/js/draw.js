// The drawing pad and what the network makes of the drawing.
//
// Strokes are drawn with Pointer Events (mouse, touch and pen in one set of handlers)
// and kept as points in 0..1 of the pad, so that a resize or a change of device pixel
// ratio redraws them crisply at the new size. The ink is opaque on a transparent
// canvas: its alpha channel, downsampled to SEND_SIZE x SEND_SIZE, is the image sent
// to POST /api/predict (integers 0..255, ink high).
//
// Requests: while a stroke is drawn, at most one every DEBOUNCE_MS, never more than one
// in flight; when a stroke ends, one more with `explain: true` (the feature maps). An
// answer that comes back after the pad was cleared is dropped.

import { api, ApiError } from './api.js';
import { cssVar, formatPercent, parseColour } from './format.js';
import { palette as filterPalette } from './filters.js';

const SEND_SIZE = 140;        // side of the image sent (at most 200), 5 x 28
const DEBOUNCE_MS = 150;
const REFERENCE_SIZE = 280;   // the pen width is given in CSS pixels of a 280 px pad
const MAX_CHANNELS = 32;      // feature maps shown per layer
const MAX_FILTER_CHANNELS = 16;

function colours() {
  return {
    ink: parseColour(cssVar('--draw-ink'), [17, 24, 39]),
    ...filterPalette(),
  };
}

/** "run 3f2a… · epoch 2", "bundled model", …: which model answered. */
export function describeModel(model) {
  if (!model || typeof model !== 'object') return '';
  if (model.source === 'bundled') return 'bundled model';
  const parts = [model.run_id ? `run ${String(model.run_id).slice(0, 4)}…` : 'latest run'];
  if (Number.isFinite(model.epoch)) parts.push(`epoch ${model.epoch}`);
  if (model.source === 'training') parts.push('training');
  return parts.join(' · ');
}

/** A friendly sentence for a failed prediction request. */
function describeFailure(error) {
  if (!(error instanceof ApiError)) return 'The prediction failed.';
  if (error.status === 0) return 'Cannot reach the server.';
  if (error.status === 404 || error.status === 405) return 'This server cannot read drawings yet.';
  if (error.status === 413) return 'The drawing is too big to send.';
  if (error.status === 422) return error.message || 'The network cannot read this drawing.';
  if (error.status === 503) return error.message || 'No model is ready to read the drawing yet.';
  return error.message || `The server answered ${error.status}.`;
}

/** Paint `values` (H x W, any range) into `canvas` as ink of alpha 0..1, min..max per map. */
function paintMap(canvas, values, ink, normalise) {
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
        const t = Number.isFinite(wgt) ? Math.max(-1, Math.min(1, wgt / max)) : 0;
        const end = t < 0 ? palette.negative : palette.positive;
        const a = Math.abs(t);
        const i = ((oy + y) * w + ox + x) * 4;
        for (let j = 0; j < 3; j++) data[i + j] = Math.round(palette.zero[j] + (end[j] - palette.zero[j]) * a);
        data[i + 3] = 255;
      }
    }
  }
  ctx.putImageData(image, 0, 0);
}

function maxAbs(filters) {
  let max = 0;
  for (const f of filters) for (const c of f) for (const row of c) for (const w of row) {
    const a = Math.abs(w);
    if (a > max && Number.isFinite(a)) max = a;
  }
  return max || 1;
}

function isMaps(layer) {
  return layer && Array.isArray(layer.maps) && layer.maps.length
    && Array.isArray(layer.maps[0]) && Array.isArray(layer.maps[0][0]);
}

export function createDraw({
  canvas, clearButton, penInput, penOutput, predictionEl, modelEl, probabilitiesEl,
  inputCanvas, mapsEl, errorEl,
}) {
  const ctx = canvas.getContext('2d');
  const rows = Array.from(probabilitiesEl.querySelectorAll('li[data-digit]'))
    .sort((a, b) => Number(a.dataset.digit) - Number(b.dataset.digit))
    .map((li) => ({ li, fill: li.querySelector('.prob-fill'), value: li.querySelector('.prob-value') }));
  const emptyMapsText = mapsEl.textContent.trim() || 'Lift the pen after drawing to see the feature maps.';
  const sampler = document.createElement('canvas');
  sampler.width = SEND_SIZE;
  sampler.height = SEND_SIZE;
  const samplerCtx = sampler.getContext('2d', { willReadFrequently: true });

  let palette = colours();
  let strokes = [];          // {width: CSS px of a 280 px pad, points: [[x, y] in 0..1]}
  let current = null;        // the stroke being drawn
  let pointerId = null;

  let timer = 0;
  let inFlight = false;
  let dirty = false;         // ink not yet sent
  let wantExplain = false;   // a stroke ended: the next request asks for feature maps
  let generation = 0;        // bumped by clear: answers of an older generation are dropped
  let applied = 0;
  let lastDigit = null;
  let lastAnswer = null;     // for a redraw after a theme change
  let mapsKey = '';
  let mapViews = [];         // per layer: {maps: [canvas], filters: [canvas] | null}

  // ----- the pad -----
  function penWidth() {
    const value = Number(penInput?.value);
    return Number.isFinite(value) && value > 0 ? value : 22;
  }

  function strokeStyle(stroke) {
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.lineWidth = (stroke.width / REFERENCE_SIZE) * canvas.width;
    ctx.strokeStyle = `rgb(${palette.ink.join(',')})`;
    ctx.fillStyle = ctx.strokeStyle;
  }

  /** Draw `stroke` from point `from` on (a lone point is a dot). */
  function paintStroke(stroke, from = 0) {
    const { points } = stroke;
    const size = canvas.width;
    strokeStyle(stroke);
    if (points.length === 1) {
      ctx.beginPath();
      ctx.arc(points[0][0] * size, points[0][1] * size, ctx.lineWidth / 2, 0, Math.PI * 2);
      ctx.fill();
      return;
    }
    const start = Math.max(0, from - 1);
    ctx.beginPath();
    ctx.moveTo(points[start][0] * size, points[start][1] * size);
    for (let i = start + 1; i < points.length; i++) ctx.lineTo(points[i][0] * size, points[i][1] * size);
    ctx.stroke();
  }

  function redraw() {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    for (const stroke of strokes) paintStroke(stroke);
  }

  /** Match the backing store to the displayed size times the device pixel ratio. */
  function resize() {
    const cssSize = canvas.getBoundingClientRect().width;
    if (!cssSize) return;
    const px = Math.max(1, Math.round(cssSize * (window.devicePixelRatio || 1)));
    if (canvas.width !== px || canvas.height !== px) {
      canvas.width = px;
      canvas.height = px;
      redraw();
    }
  }

  function pointOf(event) {
    const r = canvas.getBoundingClientRect();
    const x = (event.clientX - r.left) / (r.width || 1);
    const y = (event.clientY - r.top) / (r.height || 1);
    return [Math.min(1.02, Math.max(-0.02, x)), Math.min(1.02, Math.max(-0.02, y))];
  }

  function onPointerDown(event) {
    if (pointerId !== null) return;                          // one finger draws at a time
    if (event.pointerType === 'mouse' && event.button !== 0) return;
    event.preventDefault();
    pointerId = event.pointerId;
    try {
      canvas.setPointerCapture(event.pointerId);
    } catch { /* an already released pointer */ }
    current = { width: penWidth(), points: [pointOf(event)] };
    strokes.push(current);
    paintStroke(current);
    hideError();
    mapsEl.classList.add('is-stale');
    schedule();
  }

  function onPointerMove(event) {
    if (event.pointerId !== pointerId || !current) return;
    event.preventDefault();
    const from = current.points.length;
    const batch = typeof event.getCoalescedEvents === 'function' ? event.getCoalescedEvents() : [];
    for (const e of batch.length ? batch : [event]) current.points.push(pointOf(e));
    paintStroke(current, from);
    schedule();
  }

  function onPointerEnd(event) {
    if (event.pointerId !== pointerId) return;
    if (event.cancelable) event.preventDefault();
    pointerId = null;   // the capture is released by the browser after pointerup/cancel
    current = null;
    finish();
  }

  // Touch-action: none already keeps a finger from scrolling; these stop older
  // browsers (and long-press menus) too.
  function onTouch(event) {
    if (event.cancelable) event.preventDefault();
  }

  const active = { passive: false };
  canvas.addEventListener('pointerdown', onPointerDown, active);
  canvas.addEventListener('pointermove', onPointerMove, active);
  canvas.addEventListener('pointerup', onPointerEnd, active);
  canvas.addEventListener('pointercancel', onPointerEnd, active);
  canvas.addEventListener('lostpointercapture', onPointerEnd);
  canvas.addEventListener('touchstart', onTouch, active);
  canvas.addEventListener('touchmove', onTouch, active);
  canvas.addEventListener('contextmenu', (event) => event.preventDefault());

  if (typeof ResizeObserver === 'function') new ResizeObserver(resize).observe(canvas);
  window.addEventListener('resize', resize);
  // A zoom or a move to another screen changes the pixel ratio without a resize event.
  (function watchRatio() {
    const query = window.matchMedia(`(resolution: ${window.devicePixelRatio || 1}dppx)`);
    query.addEventListener('change', () => {
      resize();
      watchRatio();
    }, { once: true });
  }());
  resize();

  if (penInput) {
    const showPen = () => {
      if (penOutput) penOutput.textContent = String(penWidth());
    };
    penInput.addEventListener('input', showPen);
    showPen();
  }

  // ----- the image sent -----
  /** The pad's alpha channel at SEND_SIZE x SEND_SIZE as rows of 0..255, or null when blank. */
  function sample() {
    samplerCtx.clearRect(0, 0, SEND_SIZE, SEND_SIZE);
    samplerCtx.imageSmoothingEnabled = true;
    samplerCtx.imageSmoothingQuality = 'high';
    samplerCtx.drawImage(canvas, 0, 0, canvas.width, canvas.height, 0, 0, SEND_SIZE, SEND_SIZE);
    const { data } = samplerCtx.getImageData(0, 0, SEND_SIZE, SEND_SIZE);
    let ink = false;
    const image = new Array(SEND_SIZE);
    for (let y = 0; y < SEND_SIZE; y++) {
      const row = new Array(SEND_SIZE);
      for (let x = 0; x < SEND_SIZE; x++) {
        const a = data[(y * SEND_SIZE + x) * 4 + 3];
        row[x] = a;
        if (a) ink = true;
      }
      image[y] = row;
    }
    return ink ? image : null;
  }

  // ----- requests -----
  function schedule() {
    dirty = true;
    if (!timer && !inFlight) timer = setTimeout(send, DEBOUNCE_MS);
  }

  function finish() {
    dirty = true;
    wantExplain = true;
    clearTimeout(timer);
    timer = 0;
    if (!inFlight) send();
  }

  async function send() {
    timer = 0;
    if (!dirty || inFlight) return;
    dirty = false;
    const explain = wantExplain && pointerId === null;
    if (explain) wantExplain = false;
    const image = strokes.length ? sample() : null;
    if (!image) return;                                     // nothing drawn: nothing to ask
    const mine = generation;
    inFlight = true;
    try {
      const answer = await api('POST', '/api/predict', { image, explain });
      if (mine === generation) apply(answer, explain);
    } catch (error) {
      if (mine === generation) showError(describeFailure(error));
    } finally {
      inFlight = false;
      if (dirty) {
        if (pointerId === null) send();
        else if (!timer) timer = setTimeout(send, DEBOUNCE_MS);
      }
    }
  }

  // ----- the answer -----
  function apply(answer, explain) {
    if (!answer || typeof answer !== 'object' || !Number.isInteger(answer.digit)) {
      showError('The server sent an answer this page cannot read.');
      return;
    }
    hideError();
    predictionEl.textContent = String(answer.digit);
    const probs = Array.isArray(answer.probabilities) ? answer.probabilities : [];
    rows.forEach((row, digit) => {
      const p = Number(probs[digit]);
      const known = Number.isFinite(p);
      row.fill.style.setProperty('--p', known ? String(Math.max(0, Math.min(1, p))) : '0');
      row.value.textContent = known ? formatPercent(p, 1) : '–';
      row.li.classList.toggle('is-top', digit === answer.digit);
    });
    if (Array.isArray(answer.input)) paintMap(inputCanvas, answer.input, palette.ink, false);
    modelEl.textContent = describeModel(answer.model);
    modelEl.title = answer.model?.description || '';
    if (explain) {
      if (Array.isArray(answer.feature_maps)) showMaps(answer.feature_maps);
      // Current unless more ink came since the request.
      if (!dirty && pointerId === null) mapsEl.classList.remove('is-stale');
    }
    lastAnswer = { ...answer, feature_maps: explain ? answer.feature_maps : lastAnswer?.feature_maps };
    lastDigit = answer.digit;
    applied += 1;
  }

  function buildMaps(layers) {
    mapsEl.replaceChildren();
    mapViews = layers.map((layer) => {
      const [channels, h, w] = Array.isArray(layer.shape) ? layer.shape : [layer.maps.length, 0, 0];
      const group = document.createElement('div');
      group.className = 'fmap-layer';
      group.dataset.layer = String(layer.layer);
      const title = document.createElement('h4');
      title.className = 'fmap-layer-title';
      title.textContent = layer.name || `layer ${layer.layer}`;
      const meta = document.createElement('span');
      meta.className = 'fmap-layer-meta';
      const shown = Math.min(layer.maps.length, MAX_CHANNELS);
      meta.textContent = `${layer.kind || ''} · ${channels}×${h}×${w}`
        + (shown < layer.maps.length ? ` (first ${shown} channels)` : '');
      title.append(' ', meta);
      const grid = document.createElement('div');
      grid.className = 'fmap-grid';
      const maps = [];
      const filters = Array.isArray(layer.filters) ? [] : null;
      for (let c = 0; c < shown; c++) {
        const item = document.createElement('div');
        item.className = 'fmap';
        const map = document.createElement('canvas');
        map.className = 'fmap-canvas';
        map.dataset.layer = String(layer.layer);
        map.dataset.channel = String(c);
        map.setAttribute('role', 'img');
        map.setAttribute('aria-label', `${layer.name || 'layer'} channel ${c + 1}`);
        item.append(map);
        maps.push(map);
        if (filters) {
          const filter = document.createElement('canvas');
          filter.className = 'fmap-filter';
          filter.setAttribute('role', 'img');
          filter.setAttribute('aria-label', `the filter that made channel ${c + 1}`);
          item.append(filter);
          filters.push(filter);
        }
        grid.append(item);
      }
      group.append(title, grid);
      mapsEl.append(group);
      return { maps, filters };
    });
  }

  function showMaps(layers) {
    const shown = layers.filter(isMaps);
    if (!shown.length) {
      emptyMaps('This network has no feature maps to show.');
      return;
    }
    const key = shown.map((l) => `${l.layer}:${l.name}:${(l.shape || []).join('x')}:${Array.isArray(l.filters)}`).join('|');
    if (key !== mapsKey) {
      buildMaps(shown);
      mapsKey = key;
    }
    shown.forEach((layer, i) => {
      const view = mapViews[i];
      view.maps.forEach((canvasEl, c) => paintMap(canvasEl, layer.maps[c], palette.ink, true));
      if (view.filters) {
        const max = maxAbs(layer.filters);
        view.filters.forEach((canvasEl, c) => {
          if (Array.isArray(layer.filters[c])) paintFilter(canvasEl, layer.filters[c], max, palette);
        });
      }
    });
  }

  function emptyMaps(text = emptyMapsText) {
    const p = document.createElement('p');
    p.className = 'draw-empty';
    p.textContent = text;
    mapsEl.replaceChildren(p);
    mapsKey = '';
    mapViews = [];
  }

  function showError(text) {
    errorEl.textContent = text;
    errorEl.hidden = false;
  }

  function hideError() {
    errorEl.hidden = true;
    errorEl.textContent = '';
  }

  function clear() {
    generation += 1;
    clearTimeout(timer);
    timer = 0;
    dirty = false;
    wantExplain = false;
    strokes = [];
    current = null;
    if (pointerId !== null) {
      try {
        canvas.releasePointerCapture(pointerId);
      } catch { /* already released */ }
      pointerId = null;
    }
    redraw();
    hideError();
    predictionEl.textContent = '';
    rows.forEach((row) => {
      row.fill.style.setProperty('--p', '0');
      row.value.textContent = '–';
      row.li.classList.remove('is-top');
    });
    inputCanvas.getContext('2d').clearRect(0, 0, inputCanvas.width, inputCanvas.height);
    modelEl.textContent = '';
    modelEl.title = '';
    mapsEl.classList.remove('is-stale');
    emptyMaps();
    lastDigit = null;
    lastAnswer = null;
  }

  clearButton.addEventListener('click', clear);

  return {
    clear,
    /** Colours come from CSS variables: repaint after a light/dark switch. */
    restyle() {
      palette = colours();
      redraw();
      if (lastAnswer) {
        if (Array.isArray(lastAnswer.input)) paintMap(inputCanvas, lastAnswer.input, palette.ink, false);
        if (Array.isArray(lastAnswer.feature_maps)) showMaps(lastAnswer.feature_maps);
      }
    },
    predictions: () => applied,
    lastPrediction: () => lastDigit,
  };
}
