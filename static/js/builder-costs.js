// The builder's cost table (issue 14): CHECK_DELAY_MS after the last edit, the server's
// own check of the network (POST /api/specs/check) fills in each layer's output shape,
// parameters and multiply-adds per image, the totals, the estimated time of an epoch and
// of the run with the run form's settings, and the server's limits. A network the server
// refuses gets the message next to the layer at fault (aria-invalid and
// aria-describedby on its controls), and keeps it as the reason Start refuses it, until
// the network or the settings change (`invalidate`). The server is the judge, not a
// copy of its rules here.

import { api, ApiError } from './api.js';
import { formatDuration, formatInteger } from './format.js';
import { isObject, shapeText } from './builder-spec.js';

// The check waits this long after the last edit (a person typing "128" checks once).
export const CHECK_DELAY_MS = 250;
// The run form's fields the time estimate depends on (SpecCheckRequest's).
export const ESTIMATE_FIELDS = ['epochs', 'batch_size'];

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

/**
 * @param {object} options
 * @param {object} options.elements  totalParameters, totalMultiplyAdds, status, limits
 * @param {HTMLFormElement} options.form  the run form (its epochs, batch size, optimizer)
 * @param {() => string} options.presetName  the form's preset
 * @param {() => object | null} options.network  the spec to check
 * @param {() => boolean} options.wanted  whether a check is worth asking for now
 */
export function createCostTable({ elements: el, form, presetName, network, wanted }) {
  const field = (name) => form.elements.namedItem(name);
  let version = 0;        // bumped at every change of the network or of the estimate's settings
  let problem = null;     // the server's refusal: {detail, version}
  let timer = 0;
  let rows = [];          // the layer list's rows (builder-layers.js): their cost cells

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

  function cancel() {
    clearTimeout(timer);
    timer = 0;
  }

  function schedule(delay = CHECK_DELAY_MS) {
    cancel();
    if (!wanted()) return;
    timer = setTimeout(check, delay);
  }

  async function check() {
    timer = 0;
    const asked = version;
    try {
      const answer = await api('POST', '/api/specs/check', { spec: network(), ...settings() });
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
    problem = { detail, version };
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

  return {
    schedule,
    cancel,
    showStatus,
    /** The network or the estimate's settings changed: an answer asked before is stale. */
    invalidate() {
      version += 1;
    },
    /** The layer list was rebuilt: its rows' costs wait for the next check. */
    setRows(newRows) {
      rows = newRows;
      el.totalParameters.textContent = '…';
      el.totalMultiplyAdds.textContent = '…';
    },
    /** The server's reason for refusing the network as it is now, or null. */
    refusal: () => (problem && problem.version === version ? problem.detail : null),
  };
}
