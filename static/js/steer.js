// Steering the selected run while it trains: its learning rate and momentum (Adam's
// beta1), changed from the next batch on (POST /api/runs/{id}/hyperparameters), and
// "Step one epoch" from a paused or finished run (POST /api/runs/{id}/step).
//
// The inputs show the run's current values (from the status, about once a second, and
// from each change) until the user edits one; Apply sends only the edited ones. The
// server checks the values: its 4xx message is shown next to the control.

import { isUnavailable, setUnavailable } from './buttons.js';
import { api, ApiError } from './api.js';
import { formatNumber } from './format.js';

const STEERABLE = new Set(['running', 'paused']);
const STEPPABLE = new Set(['paused', 'finished']);

/** The text of an input as a number; null when empty; throws for anything else. */
function readNumber(input, label) {
  const text = input.value.trim();
  if (text === '') {
    if (input.validity && input.validity.badInput) throw new Error(`${label} must be a number.`);
    return null;
  }
  const value = Number(text);
  if (!Number.isFinite(value)) throw new Error(`${label} must be a number.`);
  return value;
}

function errorText(error) {
  return error instanceof ApiError ? error.message : String(error.message || error);
}

export function createSteer({ controls, form, lrInput, momentumInput, momentumLabel, applyButton,
  nowEl, errorEl, stepButton, stepErrorEl }) {
  const fields = [
    { key: 'learning_rate', input: lrInput, label: 'Learning rate' },
    { key: 'momentum', input: momentumInput, label: 'Momentum' },
  ];
  let state = 'idle';
  let runId = null;
  let current = { learning_rate: null, momentum: null };
  let pending = null;     // values sent and accepted, not yet in effect
  let busy = false;

  const edited = new Set();   // keys the user typed into since the last Apply
  for (const field of fields) {
    field.input.addEventListener('input', () => edited.add(field.key));
  }

  /** The path of the run steered: the selected one. */
  function runPath(action) {
    return `/api/runs/${runId ? encodeURIComponent(runId) : 'current'}/${action}`;
  }

  function show(element, text) {
    element.textContent = text || '';
    element.hidden = !text;
  }

  function render() {
    const steerable = STEERABLE.has(state);
    for (const field of fields) {
      field.input.disabled = !steerable;
      // The current value, unless the user is changing it.
      if (!edited.has(field.key) && document.activeElement !== field.input) {
        const value = current[field.key];
        field.input.value = Number.isFinite(value) ? String(Number(value.toPrecision(6))) : '';
      }
    }
    setUnavailable(applyButton, busy || !steerable);
    setUnavailable(stepButton, busy || !runId || !STEPPABLE.has(state));
    stepButton.title = state === 'running' ? 'Pause the run first, or let it finish' : '';
    nowEl.textContent = describeCurrent(steerable);
  }

  function describeCurrent(steerable) {
    if (!Number.isFinite(current.learning_rate)) return '';
    let text = `${steerable ? 'Now' : 'Last'}: learning rate ${formatNumber(current.learning_rate)}`;
    if (Number.isFinite(current.momentum)) {
      text += ` · ${momentumLabel.textContent.toLowerCase()} ${formatNumber(current.momentum)}`;
    }
    return pending && steerable ? `${text}. Applied: from the next batch on.` : text;
  }

  function setCurrent(values) {
    const next = { ...current };
    for (const { key } of fields) if (values[key] !== undefined) next[key] = values[key];
    current = next;
  }

  /** Adam calls its momentum beta1. */
  function showOptimizer(config) {
    const adam = config?.optimizer === 'adam';
    momentumLabel.textContent = adam ? 'Momentum (β₁)' : 'Momentum';
    fields[1].label = momentumLabel.textContent;
  }

  async function send(path, body, errorElement) {
    busy = true;
    render();
    const seen = controls.statusesSeen();
    try {
      const answer = await api('POST', path, body);
      show(errorElement, '');
      controls.applyAnswer(answer, seen);
      return answer;
    } catch (error) {
      show(errorElement, errorText(error));
      return null;
    } finally {
      busy = false;
      render();
    }
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (busy || isUnavailable(applyButton)) return;
    const body = {};
    try {
      for (const field of fields) {
        if (!edited.has(field.key)) continue;
        const value = readNumber(field.input, field.label);
        if (value !== null) body[field.key] = value;
      }
    } catch (error) {
      show(errorEl, error.message);
      return;
    }
    if (!Object.keys(body).length) {
      show(errorEl, 'Change the learning rate or the momentum first.');
      return;
    }
    if (await send(runPath('hyperparameters'), body, errorEl)) {
      pending = body;
      edited.clear();
      render();
    }
  });

  stepButton.addEventListener('click', () => {
    if (!busy && !isUnavailable(stepButton)) send(runPath('step'), undefined, stepErrorEl);
  });

  controls.subscribe((status) => {
    state = status.state || 'idle';
    if (status.run_id !== runId) {
      runId = status.run_id || null;
      pending = null;
      show(errorEl, '');
      show(stepErrorEl, '');
    }
    if (status.config) showOptimizer(status.config);
    // A status without the values (idle, or an older server) leaves them as they are.
    if ('learning_rate' in status) setCurrent(status);
    if (!STEERABLE.has(state)) edited.clear();
    render();
  });

  render();

  return {
    /** A "hyperparameters" event: the change took effect. */
    applyChange(change) {
      setCurrent(change);
      pending = null;
      render();
    },
  };
}
