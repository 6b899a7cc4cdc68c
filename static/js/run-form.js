// The run form's settings (epochs, batch size, learning rate, seed, augmentation,
// optimizer): read into the body of POST /api/runs, filled in from a preset or a run,
// and the line under it that says why a request failed. Whether the person has edited
// it is kept, so that a run's settings arriving later do not overwrite their own.

import { PAGE_EVENTS } from './events.js';

// The number fields: [body key, which is the input's name, label for messages].
const NUMBER_FIELDS = [
  ['epochs', 'Epochs'],
  ['batch_size', 'Batch size'],
  ['learning_rate', 'Learning rate'],
  ['seed', 'Seed'],
  ['augment_shift', 'Shift'],
  ['augment_scale', 'Scale'],
  ['augment_rotation', 'Rotation'],
  ['augment_stroke', 'Stroke'],
];

/**
 * @param {object} options
 * @param {object} options.elements  form, preset, optimizer, formError
 * @param {{specForRun: () => object | null}} [options.network]  the builder: the spec to
 *   train instead of the preset's network (null: the preset's); throws, with the message
 *   to show, for a network that cannot train
 */
export function createRunForm({ elements: el, network = null }) {
  const field = (name) => el.form.elements.namedItem(name);
  const numberInputs = NUMBER_FIELDS.map(([key, label]) => [key, field(key), label])
    .filter(([, input]) => input);
  let edited = false;
  el.form.addEventListener('input', () => { edited = true; });
  el.form.addEventListener('change', () => { edited = true; });

  function showError(text) {
    el.formError.textContent = text;
    el.formError.hidden = false;
  }

  function hideError() {
    el.formError.hidden = true;
    el.formError.textContent = '';
  }

  /** The settings as POST /api/runs takes them; throws, with the message, on a bad value. */
  function collect() {
    const body = { preset: el.preset.value };
    for (const [key, input, label] of numberInputs) {
      const text = input.value.trim();
      if (text === '') {
        if (input.validity && input.validity.badInput) throw new Error(`${label} must be a number.`);
        continue;
      }
      const value = Number(text);
      if (!Number.isFinite(value)) throw new Error(`${label} must be a number.`);
      body[key] = value;
    }
    if (el.optimizer.value) body.optimizer = el.optimizer.value;
    const spec = network ? network.specForRun() : null;
    if (spec) body.spec = spec;
    return body;
  }

  /** The fields from a preset's or a run's settings (`config`). */
  function fill(config) {
    if (!config) return;
    for (const [key, input] of numberInputs) {
      if (config[key] != null) input.value = String(config[key]);
    }
    if (config.optimizer) el.optimizer.value = config.optimizer;
    // Tell the augmentation preview, the comparisons and the builder that fields changed.
    el.form.dispatchEvent(new CustomEvent(PAGE_EVENTS.formFilled));
  }

  return {
    form: el.form,
    field,
    collect,
    fill,
    showError,
    hideError,
    /** The person has changed a field since the page opened. */
    edited: () => edited,
  };
}
