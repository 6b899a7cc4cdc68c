// The builder's layer list (issue 14): the network's layers to change (add, remove, move
// up and down, each layer's type and sizes) and its loss and initial weights. It edits
// the spec it is shown in place and says so (`onChange`); a change of the list's
// structure rebuilds it (`onRendered` hands the new rows to the cost table,
// builder-costs.js, which fills in their cells) and gives the focus back to the control
// that was pressed.

import { isUnavailable, newButton, setUnavailable } from './buttons.js';
import { completeLayer, isObject, shapeText } from './builder-spec.js';

// A new layer's sizes where the engine has none: small, quick to train. A new conv
// keeps its input's size (3x3 padded by 1), so adding one rarely breaks a network.
const NEW_LAYER = { conv: { filters: 8, padding: 1 }, dense: { units: 32 } };
// Layers that take an image: added before the network's flatten by default.
const IMAGE_LAYERS = new Set(['conv', 'maxpool']);

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

const actionButton = (className, text, label) =>
  newButton(`button button-small builder-action ${className}`, text, label);

/** The layer's type and size fields, labelled "Layer <index>"; `controls`: the type
 *  first, then the sizes. */
function layerFields(layer, id, index, schema) {
  const kind = isObject(layer) ? layer.type : undefined;
  const keys = schema.layers[kind] || null;
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
  return { edit, controls };
}

/** Move up, move down and remove, named after the layer. */
function layerActions(layer, index, count) {
  const kind = isObject(layer) ? layer.type : undefined;
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
  return actions;
}

/** One layer's row: its fields, its cost cells, its actions and its error line. */
function layerRow(layer, index, count, schema) {
  const id = `builder-layer-${index}`;
  const li = document.createElement('li');
  li.className = 'builder-grid builder-layer';
  li.dataset.index = String(index);
  const { edit, controls } = layerFields(layer, id, index, schema);
  const out = costCell('builder-out', 'output');
  const parameters = costCell('builder-cost', 'parameters', { after: true });
  const multiplyAdds = costCell('builder-cost', 'multiply-adds', { after: true });
  const error = document.createElement('p');
  error.className = 'builder-layer-error';
  error.id = `${id}-error`;
  error.hidden = true;
  li.append(edit, out.cell, parameters.cell, multiplyAdds.cell, layerActions(layer, index, count), error);
  return { li, controls, out: out.value, parameters: parameters.value,
    multiplyAdds: multiplyAdds.value, error };
}

/**
 * @param {object} options
 * @param {object} options.elements  list, inputShape, addType, addAt, addButton, loss, init
 * @param {object} options.schema  the engine's layers and defaults (builder-spec.js readSchema)
 * @param {() => void} options.onChange  the spec shown was edited
 * @param {(rows: object[]) => void} options.onRendered  the rows of a rebuilt list
 */
export function createLayerList({ elements: el, schema, onChange, onRendered }) {
  let spec = null;        // the network shown, edited in place
  let rows = [];          // per layer: {li, controls, out, parameters, multiplyAdds, error}

  const newLayer = (type) => completeLayer({ type, ...(NEW_LAYER[type] || {}) }, schema);

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
   *  control to give the focus back to. */
  function render({ focus = null } = {}) {
    rows = spec.layers.map((layer, i, layers) => layerRow(layer, i, layers.length, schema));
    el.list.replaceChildren(...rows.map((row) => row.li));
    onRendered(rows);
    renderWhere();
    renderSettings();
    if (focus) {
      const target = el.list.querySelector(`li[data-index="${focus.index}"] [data-key="${focus.key}"]`);
      if (target) target.focus();
    }
  }

  el.list.addEventListener('input', (event) => {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || !spec) return;
    const index = Number(input.closest('li')?.dataset.index);
    const layer = spec.layers[index];
    if (!isObject(layer)) return;
    const text = input.value.trim();
    if (text === '') delete layer[input.dataset.key];
    else layer[input.dataset.key] = Number(text);
    onChange();
  });

  el.list.addEventListener('change', (event) => {
    const select = event.target;
    if (!(select instanceof HTMLSelectElement) || select.dataset.key !== 'type' || !spec) return;
    const index = Number(select.closest('li')?.dataset.index);
    spec.layers[index] = newLayer(select.value);
    render({ focus: { index, key: 'type' } });
    onChange();
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
    onChange();
  });

  el.addType.addEventListener('change', renderWhere);
  el.addButton.addEventListener('click', () => {
    if (!spec || !schema.layers[el.addType.value]) return;
    const at = Math.min(Number(el.addAt.value) || 0, spec.layers.length);
    spec.layers.splice(at, 0, newLayer(el.addType.value));
    render();  // the focus stays on Add: add another, or Tab on to Start
    const row = rows[at];
    if (row) row.li.classList.add('is-new');
    onChange();
  });

  for (const [select, key] of [[el.loss, 'loss'], [el.init, 'init']]) {
    select.addEventListener('change', () => {
      if (!spec) return;
      spec[key] = select.value;
      onChange();
    });
  }

  return {
    /** Show (and from now on edit) `network`. */
    show(network) {
      spec = network;
      render();
    },
  };
}
