// The drawing pad and what the network makes of the drawing.
//
// Strokes are drawn with Pointer Events (mouse, touch and pen in one set of handlers)
// and kept as points in 0..1 of the pad, so that a resize or a change of device pixel
// ratio redraws them crisply at the new size. The ink is opaque on a transparent
// canvas: its alpha channel, downsampled to SEND_SIZE x SEND_SIZE, is the image sent
// to POST /api/predict, as its bytes (0..255, ink high) in base64 (`pixels` and
// `width`): a fifth of the JSON of rows of numbers, and far cheaper for the server to
// read while it trains.
//
// Requests: while a stroke is drawn, at most one every DEBOUNCE_MS, never more than one
// in flight; when a stroke ends, one more with `explain: true` (the feature maps). An
// answer that comes back after the pad was cleared is dropped.

import { api, ApiError } from './api.js';
import { cssVar, formatPercent, parseColour } from './format.js';
import { palette as filterPalette } from './filters.js';
import { createLayerView, paintMap } from './layers.js';

const SEND_SIZE = 140;        // side of the image sent (at most 200), 5 x 28
const DEBOUNCE_MS = 150;
const REFERENCE_SIZE = 280;   // the pen width is given in CSS pixels of a 280 px pad

function colours() {
  return {
    ink: parseColour(cssVar('--draw-ink'), [17, 24, 39]),
    axis: parseColour(cssVar('--chart-axis'), [91, 101, 118]),
    ...filterPalette(),
  };
}

/** "averaged weights", "raw weights" or '': which weights of the model answered. */
export function describeWeights(model) {
  if (model?.weights === 'averaged') return 'averaged weights';
  if (model?.weights === 'raw') return 'raw weights';
  return '';
}

/** "seed #3f2a · epoch 2 · training · averaged weights", "bundled model · raw weights", …:
 * which model answered, and with which of its weights. `nameOf(runId)` names a run. */
export function describeModel(model, nameOf = null) {
  if (!model || typeof model !== 'object') return '';
  const parts = [];
  if (model.source === 'bundled') parts.push('bundled model');
  else if (model.source === 'uploaded' && !model.run_id) parts.push(model.description || 'uploaded model');
  else {
    const id = model.run_id ? String(model.run_id) : '';
    parts.push(id ? (nameOf ? nameOf(id) : `run ${id.slice(0, 4)}…`) : 'latest run');
    if (Number.isFinite(model.epoch)) parts.push(`epoch ${model.epoch}`);
    if (model.source === 'training') parts.push('training');
  }
  const weights = describeWeights(model);
  if (weights) parts.push(weights);
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

export function createDraw({
  canvas, clearButton, penInput, penOutput, predictionEl, modelEl, probabilitiesEl,
  inputCanvas, mapsEl, errorEl, rawWeightsInput = null, chooser = null, nameOf = null,
  onAnswer = null, onClear = null,
}) {
  const ctx = canvas.getContext('2d');
  const rows = Array.from(probabilitiesEl.querySelectorAll('li[data-digit]'))
    .sort((a, b) => Number(a.dataset.digit) - Number(b.dataset.digit))
    .map((li) => ({ li, fill: li.querySelector('.prob-fill'), value: li.querySelector('.prob-value') }));
  // Every layer's output for the drawing, in order (layers.js).
  const layerView = createLayerView({ container: mapsEl, colours: () => palette });
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
  /** The pad's alpha channel at SEND_SIZE x SEND_SIZE, row by row, as base64 of its
   *  bytes, or null when blank. */
  function sample() {
    samplerCtx.clearRect(0, 0, SEND_SIZE, SEND_SIZE);
    samplerCtx.imageSmoothingEnabled = true;
    samplerCtx.imageSmoothingQuality = 'high';
    samplerCtx.drawImage(canvas, 0, 0, canvas.width, canvas.height, 0, 0, SEND_SIZE, SEND_SIZE);
    const { data } = samplerCtx.getImageData(0, 0, SEND_SIZE, SEND_SIZE);
    let ink = false;
    let binary = '';
    for (let i = 3; i < data.length; i += 4) {
      if (data[i]) ink = true;
      binary += String.fromCharCode(data[i]);
    }
    return ink ? btoa(binary) : null;
  }

  // ----- requests -----
  /** Which model answers: `weights`, and the run chosen under "Answered by" as `run_id`
   *  (none: the server's default, the newest run). */
  function answeredBy() {
    // The run's moving average of its weights answers unless the raw ones are asked for.
    const asked = { weights: rawWeightsInput?.checked ? 'raw' : 'averaged' };
    const runId = chooser ? chooser.value() : '';
    if (runId) asked.run_id = runId;
    return asked;
  }

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
    const pixels = strokes.length ? sample() : null;
    if (!pixels) return;                                    // nothing drawn: nothing to ask
    const mine = generation;
    inFlight = true;
    try {
      const body = { pixels, width: SEND_SIZE, explain, ...answeredBy() };
      const answer = await api('POST', '/api/predict', body);
      if (mine === generation) apply(answer, explain);
    } catch (error) {
      if (mine === generation) {
        const chosen = chooser ? chooser.value() : '';
        if (chosen && error instanceof ApiError && error.status === 404) {
          // That run's model is gone (it failed, or ended too long ago): the newest answers.
          chooser.reset();
          showError(`${nameOf ? nameOf(chosen) : 'That run'} no longer answers: asking the newest run instead.`);
          dirty = true;
          wantExplain = wantExplain || explain;
        } else {
          showError(describeFailure(error));
        }
      }
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
    modelEl.textContent = describeModel(answer.model, nameOf);
    modelEl.title = answer.model?.description || '';
    if (explain) {
      if (Array.isArray(answer.feature_maps)) layerView.show(answer);
      // Current unless more ink came since the request.
      if (!dirty && pointerId === null) mapsEl.classList.remove('is-stale');
    }
    lastAnswer = answer;
    lastDigit = answer.digit;
    applied += 1;
    if (onAnswer) onAnswer(answer);
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
    layerView.clear();
    lastDigit = null;
    lastAnswer = null;
    if (onClear) onClear();
  }

  clearButton.addEventListener('click', clear);
  // Switching weights asks again about the drawing on the pad, feature maps included.
  rawWeightsInput?.addEventListener('change', () => {
    if (strokes.length) finish();
  });

  /** Ask again about the drawing on the pad (another model was chosen). */
  function askAgain() {
    if (strokes.length) finish();
  }

  return {
    clear,
    askAgain,
    /** The drawing on the pad as /api/predict is sent it, and which model answers it
     *  (`pixels`, `width`, `weights`, `run_id`), or null when the pad is blank. */
    drawing() {
      const pixels = strokes.length ? sample() : null;
      return pixels ? { pixels, width: SEND_SIZE, ...answeredBy() } : null;
    },
    answeredBy,
    /** The model that answered last (for the tests). */
    lastModel: () => (lastAnswer ? { ...lastAnswer.model } : null),
    /** Colours come from CSS variables: repaint after a light/dark switch. */
    restyle() {
      palette = colours();
      redraw();
      if (lastAnswer && Array.isArray(lastAnswer.input)) paintMap(inputCanvas, lastAnswer.input, palette.ink, false);
      layerView.restyle();
    },
    predictions: () => applied,
    layerStages: () => layerView.stages(),
    lastPrediction: () => lastDigit,
  };
}
