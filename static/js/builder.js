// "Build your own network" (issue 14): which network the builder holds, and the run
// form it works with. Its parts each do one thing: the layer list (builder-layers.js),
// the server's cost table (builder-costs.js), the JSON view (builder-json.js), the spec
// as data (builder-spec.js); this module holds the network they share, keeps them in
// step, and answers controls.js. Start refuses a network the server refused, with its
// message.
//
// The builder follows the run form's preset while its network is the preset's own;
// once changed it is kept (a preset chosen later trains it with its settings) until
// "Back to <preset>'s network". controls.js asks `specForRun()` for the network to
// train: null while it is the preset's own. The layer types, their keys and defaults,
// the losses and the initialisations are the engine's (cnn/model.py), handed to the
// page in #builder's data-schema.

import { isUnavailable, setUnavailable } from './buttons.js';
import { PAGE_EVENTS } from './events.js';
import { clone, completeSpec, readSchema, sameNetwork } from './builder-spec.js';
import { createCostTable, ESTIMATE_FIELDS } from './builder-costs.js';
import { createJsonView } from './builder-json.js';
import { createLayerList } from './builder-layers.js';

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

  const costs = createCostTable({
    elements: { totalParameters: el.totalParameters, totalMultiplyAdds: el.totalMultiplyAdds,
      status: el.status, limits: el.limits },
    form,
    presetName,
    network: () => spec,
    wanted: () => Boolean(spec) && !json.error() && (details.open || isEdited()),
  });
  const layers = createLayerList({
    elements: { list: el.list, inputShape: el.inputShape, addType: el.addType, addAt: el.addAt,
      addButton: el.addButton, loss: el.loss, init: el.init },
    schema,
    onChange: () => changed(),
    onRendered: (rows) => costs.setRows(rows),
  });
  const json = createJsonView({
    textarea: el.json,
    errorEl: el.jsonError,
    onParsed: (parsed) => {
      spec = parsed;
      layers.show(spec);
      changed({ fromJson: true });
    },
    onUnparsable: () => {
      costs.invalidate();
      costs.cancel();
      costs.showStatus('Not trainable until the JSON below parses.', true);
      renderBadge();
    },
  });

  /** The network differs from the chosen preset's (Start then trains it). */
  function isEdited() {
    if (!spec) return false;
    if (json.error()) return true;
    const preset = presetSpec(presetName());
    return !preset || !sameNetwork(spec, preset, schema);
  }

  function renderBadge() {
    const edited = isEdited();
    el.badge.hidden = !edited;
    el.badge.textContent = edited ? '· changed: Start trains it' : '';
    el.reset.textContent = `Back to ${presetName()}'s network`;
    setUnavailable(el.reset, !edited);
  }

  /** The network changed (in the list: the JSON view follows; or in the JSON view). */
  function changed({ fromJson = false } = {}) {
    costs.invalidate();
    if (!fromJson) json.write(spec);
    renderBadge();
    costs.schedule();
  }

  function load(network, name) {
    spec = completeSpec(clone(network), schema);
    from = name;
    costs.invalidate();
    json.write(spec);
    layers.show(spec);
    renderBadge();
    costs.schedule(0);
  }

  /** The form's preset changed (or was filled in): its network, unless one's own is
   *  being edited. */
  function followPreset() {
    const name = presetName();
    const network = presetSpec(name);
    const own = spec && (json.error() || !sameNetwork(spec, presetSpec(from), schema));
    if (!details.open && !own) {
      // Folded, with the preset's own network: nothing to draw until it opens (its list
      // and JSON cost a slow phone ~40 ms at every page load).
      spec = null;
      from = null;
      renderBadge();
      return;
    }
    if (network && name !== from && !own) load(network, name);
    else renderBadge();
  }

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
      costs.invalidate();
      costs.schedule();
    }
  };
  form.addEventListener('input', formChanged);
  form.addEventListener('change', formChanged);
  form.addEventListener(PAGE_EVENTS.formFilled, () => {
    syncOptimizer();
    followPreset();
    costs.invalidate();
    costs.schedule();
  });

  details.addEventListener('toggle', () => {
    if (!details.open) return;
    syncOptimizer();
    followPreset();
    costs.schedule(0);
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
      if (json.error()) throw new Error(`Your network's JSON does not parse: ${json.error()}`);
      if (!isEdited()) return null;
      const refusal = costs.refusal();
      if (refusal) throw new Error(refusal);
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
