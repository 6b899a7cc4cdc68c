// The augmentation preview: training digits beside random distortions of them, made by
// the server with the Training form's augmentation settings
// (GET /api/augment/preview), asked again (debounced) whenever those settings change.
//
// Digits are drawn like the drawing pad's: ink of the theme's colour, with the pixel
// value as its alpha, on a transparent canvas whose CSS background is the paper.

import { PAGE_EVENTS } from './events.js';
import { api, ApiError } from './api.js';
import { SIDE, decodePixels, inkColour, paintDigit } from './digits.js';
import { displayedTask } from './visibility.js';

const COUNT = 12;
const DEBOUNCE_MS = 300;
// The query's parameters, in order: the names of the settings' inputs handed in.
const SETTINGS = ['shift', 'scale', 'rotation', 'stroke'];

function makeCanvas(label, kind) {
  const canvas = document.createElement('canvas');
  canvas.className = `augment-digit augment-${kind}`;
  canvas.width = SIDE;
  canvas.height = SIDE;
  canvas.setAttribute('role', 'img');
  canvas.setAttribute('aria-label', `${kind} training image of a ${label}`);
  canvas.title = `${kind}: ${label}`;
  return canvas;
}

/** "shift 2 px · scale ±0.1 · rotation ±10° · stroke 0 px" from the query's values. */
function describeSettings(query) {
  const values = new URLSearchParams(query);
  return `shift ${values.get('shift')} px · scale ±${values.get('scale')} · `
    + `rotation ±${values.get('rotation')}° · stroke ${values.get('stroke')} px`;
}

function rowLabel(text) {
  const span = document.createElement('span');
  span.className = 'augment-row-label';
  span.textContent = text;
  return span;
}

/**
 * @param {object} options
 * @param {HTMLFormElement} options.form  the Training form (it says when code filled it in)
 * @param {{shift: HTMLInputElement, scale: HTMLInputElement, rotation: HTMLInputElement,
 *   stroke: HTMLInputElement}} options.inputs  the form's augmentation settings
 * @param {HTMLElement} options.grid  where the digits are drawn
 */
export function createAugmentPreview({ form, inputs: settings, grid, stampEl, errorEl }) {
  const inputs = SETTINGS.map((name) => [name, settings[name]]);
  let timer = 0;
  let asked = 0;          // requests sent; an answer to an older one is dropped
  let last = null;        // the last answer drawn, for a redraw after a theme change
  let version = 0;        // previews drawn
  let shownQuery = '';

  function query() {
    const params = new URLSearchParams();
    for (const [name, input] of inputs) {
      const value = input ? Number(input.value.trim() || 0) : 0;
      params.set(name, String(Number.isFinite(value) ? value : input.value));
    }
    params.set('count', String(COUNT));
    params.set('seed', '0');
    return params.toString();
  }

  function showError(text) {
    errorEl.textContent = text || '';
    errorEl.hidden = !text;
    grid.classList.toggle('is-stale', Boolean(text));
  }

  /** The grid of `pairs` ([{label, before, after}], pixels or null for blank tiles). */
  function build(pairs) {
    const ink = inkColour();
    const top = [rowLabel('original')];
    const bottom = [rowLabel('augmented')];
    for (const { label, before, after } of pairs) {
      const a = makeCanvas(label, 'original');
      const b = makeCanvas(label, 'augmented');
      if (before) paintDigit(a, before, ink);
      if (after) paintDigit(b, after, ink);
      top.push(a);
      bottom.push(b);
    }
    grid.style.setProperty('--augment-columns', String(pairs.length));
    grid.replaceChildren(...top, ...bottom);
  }

  function draw(answer) {
    const originals = Array.isArray(answer.originals) ? answer.originals : [];
    const augmented = Array.isArray(answer.augmented) ? answer.augmented : [];
    const pairs = originals.map((original, i) => ({
      label: original.label,
      before: decodePixels(original.pixels),
      after: decodePixels(augmented[i]?.pixels),
    })).filter((pair) => pair.before && pair.after);
    build(pairs);
  }

  async function load() {
    const text = query();
    const ticket = ++asked;
    try {
      const answer = await api('GET', `/api/augment/preview?${text}`);
      if (ticket !== asked) return;
      showError('');
      last = answer;
      shownQuery = text;
      draw(answer);
      version += 1;
      stampEl.textContent = describeSettings(text);
    } catch (error) {
      if (ticket !== asked) return;
      showError(error instanceof ApiError ? error.message : String(error.message || error));
    }
  }

  // Asked for only once its section shows (on a phone the Evaluate section may never).
  const loadWhenDisplayed = displayedTask(grid, () => {
    if (query() !== shownQuery || !last) load();
  });

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(loadWhenDisplayed, DEBOUNCE_MS);
  }

  for (const [, input] of inputs) if (input) input.addEventListener('input', schedule);
  form.addEventListener(PAGE_EVENTS.formFilled, schedule);
  // Blank tiles until the first answer: the page below does not move when it comes.
  build(Array.from({ length: COUNT }, () => ({ label: 'digit', before: null, after: null })));
  stampEl.textContent = describeSettings(query());
  schedule();

  return {
    restyle() {
      if (last) draw(last);
    },
    version: () => version,
  };
}
