// The preset chooser: the presets (from the page, else GET /api/presets), the chosen
// one's description and its fixed settings (those the form does not show), and its
// settings filled into the run form when it is chosen. A run's own preset and settings
// are shown when it starts, unless the person has edited the form.

import { api } from './api.js';
import { formatInteger } from './format.js';

/** A data-* attribute's JSON, or null. */
function parseData(text) {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

function describeFixed(c) {
  if (!c) return '';
  const train = c.train_size ? `${formatInteger(c.train_size)} training` : 'all 60,000 training';
  const test = c.test_size ? `${formatInteger(c.test_size)} test images` : 'all 10,000 test images';
  const parts = [`${train} / ${test}`];
  if (c.lr_decay != null && c.lr_decay !== 1) parts.push(`learning rate ×${c.lr_decay} per epoch`);
  if (c.optimizer === 'sgd' && c.momentum) parts.push(`momentum ${c.momentum}`);
  if (c.shuffle === false) parts.push('not shuffled');
  return parts.join(' · ');
}

/**
 * @param {object} options
 * @param {object} options.elements  preset (the select), optimizer, description, fixed
 * @param {ReturnType<import('./run-form.js').createRunForm>} options.runForm  the form it fills
 */
export function createPresetChooser({ elements: el, runForm }) {
  const presets = new Map();  // name -> {name, description, spec, config}
  let filledFromRun = false;

  function readFromPage() {
    for (const option of el.preset.options) {
      presets.set(option.value, {
        name: option.value, description: option.dataset.description || '',
        config: parseData(option.dataset.config), spec: parseData(option.dataset.spec),
      });
    }
  }

  function setPresets(list) {
    const chosen = el.preset.value || 'default';
    el.preset.replaceChildren();
    presets.clear();
    for (const preset of list) {
      presets.set(preset.name, preset);
      const option = document.createElement('option');
      option.value = preset.name;
      option.textContent = preset.name;
      el.preset.append(option);
    }
    if (presets.has(chosen)) el.preset.value = chosen;
    else if (presets.has('default')) el.preset.value = 'default';
  }

  function showPreset(name, { fill = true, config = null } = {}) {
    const preset = presets.get(name);
    el.description.textContent = preset ? preset.description : '';
    el.fixed.textContent = describeFixed(config || preset?.config);
    if (fill && preset) runForm.fill(preset.config);
  }

  el.preset.addEventListener('change', () => {
    runForm.hideError();
    showPreset(el.preset.value);
  });
  el.optimizer.addEventListener('change', () => {
    const preset = presets.get(el.preset.value);
    if (preset?.config) {
      el.fixed.textContent = describeFixed({ ...preset.config, optimizer: el.optimizer.value });
    }
  });

  return {
    /** The presets from the page's options, else from the server. */
    async load() {
      readFromPage();
      if (presets.size && [...presets.values()].every((p) => p.config && p.spec)) {
        showPreset(el.preset.value);
        return;
      }
      try {
        setPresets(await api('GET', '/api/presets'));
        // Late: keep what a run's settings or the user put in the form meanwhile.
        showPreset(el.preset.value, { fill: !runForm.edited() && !filledFromRun });
      } catch (error) {
        runForm.showError(`Could not load the presets: ${error.message}`);
      }
    },
    /** The chosen preset's name, and any preset's network and settings (null until known). */
    name: () => el.preset.value,
    spec: (name) => presets.get(name)?.spec || null,
    config: (name) => presets.get(name)?.config || null,
    /** Choose preset `name` as the person would (its settings fill the form). */
    choose(name) {
      if (!presets.has(name) || el.preset.value === name) return;
      el.preset.value = name;
      runForm.hideError();
      showPreset(name);
    },
    /** A run started elsewhere (or the last one, on load): its preset and settings in the
     *  form, unless the person has edited it. */
    showRun(run) {
      if (runForm.edited()) return;
      if (run.preset && presets.has(run.preset)) el.preset.value = run.preset;
      showPreset(el.preset.value, { fill: false, config: run.config });
      runForm.fill(run.config);
      filledFromRun = true;
    },
  };
}
