// "Build your own network" (issue 14): the chosen preset's network as a list of layers
// to change (add, remove, move up and down, each layer's type and sizes), its loss and
// initial weights, and the same network as JSON, the two views kept in step both ways
// (the ConvNetJS way). Beside each layer, CHECK_DELAY_MS after the last edit, the
// server's own check of the network (POST /api/specs/check): its output shape,
// parameters and multiply-adds per image, the totals, the estimated time of an epoch
// and of the run with the form's settings, and the server's limits. A network the
// server refuses gets the message next to the layer at fault (aria-invalid and
// aria-describedby on its controls); Start refuses it with that message.
//
// The builder follows the run form's preset while its network is the preset's own;
// once changed it is kept (a preset chosen later trains it with its settings) until
// "Back to <preset>'s network". controls.js asks `specForRun()` for the network to
// train: null while it is the preset's own. The layer types, their keys and defaults,
// the losses and the initialisations are the engine's (cnn/model.py), handed to the
// page in #builder's data-schema.

import { api, ApiError } from './api.js';
import { isUnavailable, setUnavailable } from './buttons.js';
import { PAGE_EVENTS } from './events.js';
import { formatDuration, formatInteger } from './format.js';

// The check waits this long after the last edit (a person typing "128" checks once).
export const CHECK_DELAY_MS = 250;
// A new layer's sizes where the engine has none: small, quick to train. A new conv
// keeps its input's size (3x3 padded by 1), so adding one rarely breaks a network.
const NEW_LAYER = { conv: { filters: 8, padding: 1 }, dense: { units: 32 } };
// Layers that take an image: added before the network's flatten by default.
const IMAGE_LAYERS = new Set(['conv', 'maxpool']);
// The run form's fields the time estimate depends on (SpecCheckRequest's).
const ESTIMATE_FIELDS = ['epochs', 'batch_size'];

const isObject = (value) => value !== null && typeof value === 'object' && !Array.isArray(value);
const clone = (value) => JSON.parse(JSON.stringify(value));

/** #builder's data-schema: layers as [[type, [[key, default], ...]], ...] (the engine's
 *  order) -> {type: {key: default}} (objects keep that order). */
function readSchema(details) {
  try {
    const schema = JSON.parse(details.dataset.schema || '{}');
    if (Array.isArray(schema.layers) && isObject(schema.defaults)) {
      return { ...schema, layers: Object.fromEntries(schema.layers.map(([kind, keys]) => [kind, Object.fromEntries(keys)])) };
    }
  } catch {
    // an unreadable schema: the builder offers nothing
  }
  return { layers: {}, losses: [], inits: [], defaults: {} };
}

/** `spec` with every default filled in, the engine's keys first in its order: two
 *  specs of the same network compare equal. Anything unknown is kept as it is. */
export function completeSpec(spec, schema) {
  if (!isObject(spec)) return spec;
  const out = {};
  for (const key of ['input', 'layers', 'loss', 'init']) {
    const value = key === 'layers' && Array.isArray(spec.layers)
      ? spec.layers.map((layer) => completeLayer(layer, schema)) : spec[key];
    if (value !== undefined) out[key] = value;
    else if (schema.defaults[key] !== undefined) out[key] = clone(schema.defaults[key]);
  }
  for (const [key, value] of Object.entries(spec)) if (!(key in out)) out[key] = value;
  return out;
}

function completeLayer(layer, schema) {
  const keys = isObject(layer) ? schema.layers[layer.type] : null;
  if (!keys) return layer;
  const out = { type: layer.type };
  for (const [key, value] of Object.entries(keys)) {
    if (layer[key] !== undefined) out[key] = layer[key];
    else if (value !== null) out[key] = value;
  }
  for (const [key, value] of Object.entries(layer)) if (!(key in out)) out[key] = value;
  return out;
}

/** Whether specs `a` and `b` are the same network. */
export function sameNetwork(a, b, schema) {
  return JSON.stringify(completeSpec(a, schema)) === JSON.stringify(completeSpec(b, schema));
}

function compact(value) {
  if (Array.isArray(value)) return `[${value.map(compact).join(', ')}]`;
  if (isObject(value)) {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${compact(v)}`).join(', ')}}`;
  }
  return JSON.stringify(value);
}

/** A spec as the README writes one: a layer a line. */
export function formatSpec(spec) {
  if (!isObject(spec)) return JSON.stringify(spec, null, 2);
  const lines = Object.entries(spec).map(([key, value]) => {
    if (key === 'layers' && Array.isArray(value) && value.length) {
      return `  "layers": [\n${value.map((layer) => `    ${compact(layer)}`).join(',\n')}\n  ]`;
    }
    return `  ${JSON.stringify(key)}: ${compact(value)}`;
  });
  return `{\n${lines.join(',\n')}\n}`;
}

/** The JSON view's text as a spec the form can show, or why not. */
export function parseSpec(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { error: `Not JSON: ${error.message}` };
  }
  if (!isObject(value)) return { error: 'A network is a JSON object: {"layers": [...], "loss": ..., "init": ...}.' };
  if (!Array.isArray(value.layers)) {
    return { error: '"layers" must be a list of layers: [{"type": "conv", "filters": 8}, ...].' };
  }
  return { spec: value };
}

const shapeText = (shape) => (Array.isArray(shape) ? shape.join('×') : '?');

/** Seconds as "0.3 s", "42 s", "1:12". */
function secondsText(seconds) {
  if (!Number.isFinite(seconds)) return '–';
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  return formatDuration(seconds);
}

function limitsText(limits) {
  if (!isObject(limits)) return '';
  const parts = [
    [limits.layers, 'layers'], [limits.parameters, 'parameters'],
    [limits.multiply_adds, 'multiply-adds per image'], [limits.values_per_image, 'values per image'],
    [limits.run_memory_mb, 'MB of memory a run'], [limits.run_minutes, 'minutes a run (estimated)'],
  ].filter(([value]) => Number.isFinite(value)).map(([value, what]) => `${formatInteger(value)} ${what}`);
  return parts.length ? `This server's limits: ${parts.join(' · ')}.` : '';
}

/** A cost cell: its value, and what it is for a screen reader. */
function costCell(className, what, { after = false } = {}) {
  const cell = document.createElement('span');
  cell.className = className;
  const label = document.createElement('span');
  label.className = 'visually-hidden';
  label.textContent = after ? ` ${what}` : `${what} `;
  const value = document.createElement('span');
  value.className = 'builder-value';
  value.textContent = '…';
  if (after) cell.append(value, label);
  else cell.append(label, value);
  return { cell, value };
}

function actionButton(className, text, label) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = `button button-small builder-action ${className}`;
  b.textContent = text;
  b.setAttribute('aria-label', label);
  b.title = label;
  return b;
}

/**
 * @param {object} options
 * @param {HTMLDetailsElement} options.details  #builder (its data-schema: the engine's layers)
 * @param {object} options.elements  summary, badge, list, inputShape, totalParameters,
 *   totalMultiplyAdds, status, limits, addType, addAt, addButton, loss, init, optimizer,
 *   start, reset, json, jsonError
 * @param {HTMLFormElement} options.form  the run form (its preset, epochs, batch size, optimizer)
 * @param {() => string} options.presetName  the form's preset
 * @param {(name: string) => object | null} options.presetSpec  a preset's network
 * @param {() => void} options.start  the run form's Start
 */
export function createBuilder({ details, elements: el, form, presetName, presetSpec, start }) {
  const schema = readSchema(details);
  const field = (name) => form.elements.namedItem(name);
  let spec = null;        // the network edited (what both views show)
  let from = null;        // the preset whose network was loaded last
  let version = 0;        // bumped at every change of the network or of the estimate's settings
  let problem = null;     // the server's refusal: {detail, layer, version}
  let jsonError = '';     // the JSON view does not parse: why
  let timer = 0;
  const rows = [];        // per layer: {li, controls, out, parameters, multiplyAdds, error}

  /** The network differs from the chosen preset's (Start then trains it). */
  function isEdited() {
    if (!spec) return false;
    if (jsonError) return true;
    const preset = presetSpec(presetName());
    return !preset || !sameNetwork(spec, preset, schema);
  }

  // ----- the layers -----
  function newLayer(type) {
    return completeLayer({ type, ...(NEW_LAYER[type] || {}) }, schema);
  }

  function layerRow(layer, index, count) {
    const kind = isObject(layer) ? layer.type : undefined;
    const keys = schema.layers[kind] || null;
    const id = `builder-layer-${index}`;
    const li = document.createElement('li');
    li.className = 'builder-grid builder-layer';
    li.dataset.index = String(index);

    const edit = document.createElement('span');
    edit.className = 'builder-name builder-fields';
    const label = document.createElement('label');
    label.htmlFor = `${id}-type`;
    label.className = 'builder-layer-label';
    const word = document.createElement('span');
    word.className = 'visually-hidden';
    word.textContent = 'Layer ';
    label.append(word, String(index));
    const type = document.createElement('select');
    type.id = `${id}-type`;
    type.className = 'builder-type';
    type.dataset.key = 'type';
    for (const name of Object.keys(schema.layers)) type.append(new Option(name, name));
    if (!keys) {
      const shown = typeof kind === 'string' ? `${kind.slice(0, 40)} (unknown)` : 'not a layer';
      type.append(new Option(shown, typeof kind === 'string' ? kind : ''));
    }
    type.value = typeof kind === 'string' ? kind : '';
    edit.append(label, type);
    const controls = [type];
    for (const [key, fallback] of Object.entries(keys || {})) {
      const wrap = document.createElement('span');
      wrap.className = 'builder-field';
      const name = document.createElement('label');
      name.htmlFor = `${id}-${key}`;
      name.textContent = key;
      const input = document.createElement('input');
      input.id = `${id}-${key}`;
      input.type = 'number';
      input.inputMode = 'numeric';
      input.min = key === 'padding' ? '0' : '1';
      input.step = '1';
      input.dataset.key = key;
      input.value = layer[key] === undefined || layer[key] === null ? '' : String(layer[key]);
      if (fallback !== null) input.placeholder = String(fallback);
      wrap.append(name, input);
      edit.append(wrap);
      controls.push(input);
    }

    const out = costCell('builder-out', 'output');
    const parameters = costCell('builder-cost', 'parameters', { after: true });
    const multiplyAdds = costCell('builder-cost', 'multiply-adds', { after: true });

    const actions = document.createElement('span');
    actions.className = 'builder-actions';
    const named = `layer ${index} (${typeof kind === 'string' ? kind : 'not a layer'})`;
    const up = actionButton('builder-up', '↑', `Move ${named} up`);
    const down = actionButton('builder-down', '↓', `Move ${named} down`);
    const remove = actionButton('builder-remove', '×', `Remove ${named}`);
    up.dataset.key = 'up';
    down.dataset.key = 'down';
    remove.dataset.key = 'remove';
    setUnavailable(up, index === 0);
    setUnavailable(down, index === count - 1);
    actions.append(up, down, remove);

    const error = document.createElement('p');
    error.className = 'builder-layer-error';
    error.id = `${id}-error`;
    error.hidden = true;

    li.append(edit, out.cell, parameters.cell, multiplyAdds.cell, actions, error);
    return { li, controls, out: out.value, parameters: parameters.value,
      multiplyAdds: multiplyAdds.value, error };
  }

  /** Insertion places for the add control ("after layer 2 (maxpool)"), and the likely one
   *  for the chosen type: an image layer before the flatten, any other at the end. */
  function renderWhere() {
    const layers = spec ? spec.layers : [];
    const options = [new Option('At the start', '0')];
    layers.forEach((layer, i) => {
      const kind = isObject(layer) && typeof layer.type === 'string' ? layer.type : 'not a layer';
      const last = i === layers.length - 1 ? ', at the end' : '';
      options.push(new Option(`After layer ${i} (${kind})${last}`, String(i + 1)));
    });
    el.addAt.replaceChildren(...options);
    let at = layers.length;
    if (IMAGE_LAYERS.has(el.addType.value)) {
      const flatten = layers.findIndex((layer) => isObject(layer) && layer.type === 'flatten');
      if (flatten >= 0) at = flatten;
    }
    el.addAt.value = String(at);
  }

  function renderSettings() {
    el.loss.value = spec.loss ?? schema.defaults.loss ?? '';
    el.init.value = spec.init ?? schema.defaults.init ?? '';
    el.inputShape.textContent = shapeText(spec.input ?? schema.defaults.input);
  }

  /** Rebuild the list (after a change of its structure); `focus`: {index, key} of the
   *  control to give the focus back to. The costs wait for the next check. */
  function render({ focus = null } = {}) {
    const layers = spec.layers;
    rows.length = 0;
    layers.forEach((layer, i) => rows.push(layerRow(layer, i, layers.length)));
    el.list.replaceChildren(...rows.map((row) => row.li));
    el.totalParameters.textContent = '…';
    el.totalMultiplyAdds.textContent = '…';
    renderWhere();
    renderSettings();
    if (focus) {
      const target = el.list.querySelector(`li[data-index="${focus.index}"] [data-key="${focus.key}"]`);
      if (target) target.focus();
    }
  }

  function renderBadge() {
    const edited = isEdited();
    el.badge.hidden = !edited;
    el.badge.textContent = edited ? '· changed: Start trains it' : '';
    const name = presetName();
    el.reset.textContent = `Back to ${name}'s network`;
    setUnavailable(el.reset, !edited);
  }

  function writeJson() {
    el.json.value = formatSpec(spec);
    showJsonError('');
  }

  function showJsonError(text) {
    jsonError = text;
    el.jsonError.textContent = text;
    el.jsonError.hidden = !text;
    if (text) el.json.setAttribute('aria-invalid', 'true');
    else el.json.removeAttribute('aria-invalid');
  }

  /** The network changed (from the form: the JSON view follows). */
  function changed({ json = true } = {}) {
    version += 1;
    if (json) writeJson();
    renderBadge();
    scheduleCheck();
  }

  function load(network, name) {
    spec = completeSpec(clone(network), schema);
    from = name;
    problem = null;
    version += 1;
    writeJson();
    render();
    renderBadge();
    scheduleCheck(0);
  }

  /** The form's preset changed (or was filled in): its network, unless one's own is
   *  being edited. */
  function followPreset() {
    const name = presetName();
    const network = presetSpec(name);
    const own = spec && (jsonError || !sameNetwork(spec, presetSpec(from), schema));
    if (network && name !== from && !own) load(network, name);
    else renderBadge();
  }

  // ----- the server's check -----
  /** The run form's settings the estimate assumes (what SpecCheckRequest takes). */
  function settings() {
    const body = { preset: presetName() };
    for (const key of ESTIMATE_FIELDS) {
      const value = Number(field(key)?.value);
      if (field(key)?.value !== '' && Number.isInteger(value) && value > 0) body[key] = value;
    }
    const optimizer = field('optimizer')?.value;
    if (optimizer) body.optimizer = optimizer;
    return body;
  }

  function scheduleCheck(delay = CHECK_DELAY_MS) {
    clearTimeout(timer);
    timer = 0;
    if (!spec || jsonError || (!details.open && !isEdited())) return;
    timer = setTimeout(check, delay);
  }

  async function check() {
    timer = 0;
    const asked = version;
    try {
      const answer = await api('POST', '/api/specs/check', { spec, ...settings() });
      if (asked === version) showAnswer(answer);
    } catch (error) {
      if (asked !== version) return;
      if (error instanceof ApiError && error.status === 422) {
        const payload = isObject(error.payload) ? error.payload : {};
        showProblem({ detail: error.message, layer: Number.isInteger(payload.layer) ? payload.layer : null });
      } else {
        showStatus(`Could not check the network: ${error instanceof ApiError ? error.message : String(error.message || error)}`, true);
      }
    }
  }

  function clearMarks() {
    for (const row of rows) {
      row.li.classList.remove('is-invalid');
      row.error.hidden = true;
      row.error.textContent = '';
      for (const control of row.controls) {
        control.removeAttribute('aria-invalid');
        control.removeAttribute('aria-describedby');
      }
    }
  }

  function showStatus(text, invalid) {
    el.status.textContent = text;
    el.status.classList.toggle('is-invalid', invalid);
  }

  function showAnswer(answer) {
    problem = null;
    clearMarks();
    const layers = Array.isArray(answer.layers) ? answer.layers : [];
    rows.forEach((row, i) => {
      const layer = layers[i];
      row.out.textContent = layer ? shapeText(layer.output_shape) : '–';
      row.parameters.textContent = layer ? formatInteger(layer.parameters) : '–';
      row.multiplyAdds.textContent = layer ? formatInteger(layer.multiply_adds) : '–';
    });
    el.totalParameters.textContent = formatInteger(answer.parameters);
    el.totalMultiplyAdds.textContent = formatInteger(answer.multiply_adds);
    const epochs = answer.epochs === 1 ? '1 epoch' : `${formatInteger(answer.epochs)} epochs`;
    showStatus(`About ${secondsText(answer.seconds_per_epoch)} an epoch on this server with the `
      + `settings above; ${epochs}: ${secondsText(answer.run_seconds)}.`, false);
    el.limits.textContent = limitsText(answer.limits);
  }

  function showProblem({ detail, layer }) {
    problem = { detail, layer, version };
    clearMarks();
    for (const row of rows) {
      row.out.textContent = '–';
      row.parameters.textContent = '–';
      row.multiplyAdds.textContent = '–';
    }
    el.totalParameters.textContent = '–';
    el.totalMultiplyAdds.textContent = '–';
    const row = layer !== null ? rows[layer] : null;
    if (row) {
      row.li.classList.add('is-invalid');
      row.error.textContent = detail;
      row.error.hidden = false;
      for (const control of row.controls) {
        control.setAttribute('aria-invalid', 'true');
        control.setAttribute('aria-describedby', row.error.id);
      }
      const kind = row.controls[0].value || 'not a layer';
      showStatus(`Not trainable: see layer ${layer} (${kind}).`, true);
    } else {
      showStatus(`Not trainable: ${detail}`, true);
    }
  }

  // ----- edits in the list -----
  el.list.addEventListener('input', (event) => {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || !spec) return;
    const index = Number(input.closest('li')?.dataset.index);
    const layer = spec.layers[index];
    if (!isObject(layer)) return;
    const text = input.value.trim();
    if (text === '') delete layer[input.dataset.key];
    else layer[input.dataset.key] = Number(text);
    changed();
  });

  el.list.addEventListener('change', (event) => {
    const select = event.target;
    if (!(select instanceof HTMLSelectElement) || select.dataset.key !== 'type' || !spec) return;
    const index = Number(select.closest('li')?.dataset.index);
    spec.layers[index] = newLayer(select.value);
    render({ focus: { index, key: 'type' } });
    changed();
  });

  el.list.addEventListener('click', (event) => {
    const b = event.target instanceof Element ? event.target.closest('button.builder-action') : null;
    if (!b || isUnavailable(b) || !spec) return;
    const index = Number(b.closest('li')?.dataset.index);
    const layers = spec.layers;
    if (b.dataset.key === 'remove') {
      layers.splice(index, 1);
      render({ focus: layers.length ? { index: Math.min(index, layers.length - 1), key: 'remove' } : null });
      if (!layers.length) el.addType.focus();
    } else {
      const to = b.dataset.key === 'up' ? index - 1 : index + 1;
      [layers[index], layers[to]] = [layers[to], layers[index]];
      render({ focus: { index: to, key: b.dataset.key } });
    }
    changed();
  });

  el.addType.addEventListener('change', renderWhere);
  el.addButton.addEventListener('click', () => {
    if (!spec || !schema.layers[el.addType.value]) return;
    const at = Math.min(Number(el.addAt.value) || 0, spec.layers.length);
    spec.layers.splice(at, 0, newLayer(el.addType.value));
    render();  // the focus stays on Add: add another, or Tab on to Start
    const row = rows[at];
    if (row) row.li.classList.add('is-new');
    changed();
  });

  for (const [select, key] of [[el.loss, 'loss'], [el.init, 'init']]) {
    select.addEventListener('change', () => {
      if (!spec) return;
      spec[key] = select.value;
      changed();
    });
  }

  // ----- the JSON view -----
  el.json.addEventListener('input', () => {
    const parsed = parseSpec(el.json.value);
    version += 1;
    if (parsed.error) {
      showJsonError(parsed.error);
      clearTimeout(timer);
      showStatus('Not trainable until the JSON below parses.', true);
      renderBadge();
      return;
    }
    showJsonError('');
    spec = parsed.spec;
    render();
    changed({ json: false });
  });

  // ----- the run form: its preset, and the settings the estimate assumes -----
  const syncOptimizer = () => {
    const optimizer = field('optimizer');
    if (optimizer && el.optimizer.value !== optimizer.value) el.optimizer.value = optimizer.value;
  };
  el.optimizer.addEventListener('change', () => {
    const optimizer = field('optimizer');
    if (!optimizer) return;
    optimizer.value = el.optimizer.value;
    optimizer.dispatchEvent(new Event('change', { bubbles: true }));
  });
  const formChanged = (event) => {
    const name = event.target?.name;
    if (name === 'preset') followPreset();
    if (name === 'optimizer') syncOptimizer();
    if (name === 'preset' || name === 'optimizer' || ESTIMATE_FIELDS.includes(name)) {
      version += 1;
      scheduleCheck();
    }
  };
  form.addEventListener('input', formChanged);
  form.addEventListener('change', formChanged);
  form.addEventListener(PAGE_EVENTS.formFilled, () => {
    syncOptimizer();
    followPreset();
    version += 1;
    scheduleCheck();
  });

  details.addEventListener('toggle', () => {
    if (!details.open) return;
    syncOptimizer();
    followPreset();
    scheduleCheck(0);
  });

  el.reset.addEventListener('click', () => {
    if (isUnavailable(el.reset)) return;
    const name = presetName();
    const network = presetSpec(name);
    if (network) load(network, name);
  });
  el.start.addEventListener('click', () => start());

  return {
    /** The network Start trains instead of the preset's: null while it is the preset's
     *  own; throws, with the reason, when it cannot train (the server's last word on
     *  it, or JSON that does not parse). */
    specForRun() {
      if (!spec) return null;
      if (jsonError) throw new Error(`Your network's JSON does not parse: ${jsonError}`);
      if (!isEdited()) return null;
      if (problem && problem.version === version) throw new Error(problem.detail);
      return clone(spec);
    },
    /** "Edit this network": `network` (a run's spec, the run of preset `name`) in the
     *  builder, opened, with the focus on it. */
    edit(network, name) {
      load(network, name);
      details.open = true;
      el.summary.focus({ preventScroll: true });
      details.scrollIntoView({ block: 'start' });
    },
    /** Whether `network` is not preset `name`'s own (a run of one's own network). */
    isOwnNetwork(network, name) {
      const preset = presetSpec(name);
      return Boolean(network && preset) && !sameNetwork(network, preset, schema);
    },
  };
}
