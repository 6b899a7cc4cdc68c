// The drawing pad's "Answered by" chooser: which run's model reads the drawing. The
// first choice, "Newest run", lets the server pick (the newest run in training, else the
// last that ended, else the bundled model); then each model GET /api/model/choices
// lists, newest first. The list is asked for again when runs start or end (at most
// once a second, spread over a moment so that a room of browsers does not ask at once)
// and when the chooser is opened.

import { api } from './api.js';
import { createRefresher } from './refresher.js';

const REFRESH_MS = 1000;
const SPREAD_MS = 1500;

function sourceWord(choice) {
  if (choice.source === 'training') return 'training';
  if (choice.source === 'finished') return 'finished';
  return choice.source || '';
}

export function createModelChooser({ select, nameOf, onChange }) {
  let choices = [];          // the server's list, as last read
  let optionsKey = '';
  let version = 0;

  function label(choice) {
    if (!choice.run_id) return choice.description || choice.source || 'model';
    const epoch = Number.isFinite(choice.epoch) ? `, epoch ${choice.epoch}` : '';
    return `${nameOf(choice.run_id)} (${sourceWord(choice)}${epoch})`;
  }

  function defaultText() {
    const first = choices[0];
    if (!first) return 'Newest run (now the bundled model)';
    return `Newest run (now ${first.run_id ? nameOf(first.run_id) : first.description || first.source})`;
  }

  function render() {
    // Runs only: a model is asked for by its run's id (an uploaded one has none).
    const runs = choices.filter((c) => typeof c.run_id === 'string' && c.run_id);
    const key = [defaultText(), ...runs.map((c) => `${c.run_id}:${label(c)}`)].join('|');
    if (key === optionsKey) return;
    optionsKey = key;
    const chosen = select.value;
    const options = [new Option(defaultText(), '')];
    for (const choice of runs) options.push(new Option(label(choice), choice.run_id));
    // A chosen run the list no longer has stays, marked, until the user chooses again.
    if (chosen && !runs.some((c) => c.run_id === chosen)) {
      options.push(new Option(`${nameOf(chosen)} (no longer answers)`, chosen));
    }
    select.replaceChildren(...options);
    select.value = chosen;
    version += 1;
  }

  const { refresh, refreshSoon } = createRefresher(async () => {
    const list = await api('GET', '/api/model/choices');
    choices = Array.isArray(list) ? list.filter((c) => c && typeof c === 'object') : [];
    render();
  }, { delayMs: REFRESH_MS, spreadMs: SPREAD_MS, what: 'the models' });

  select.addEventListener('focus', () => refresh());
  select.addEventListener('pointerdown', () => refresh());
  select.addEventListener('change', () => onChange && onChange(select.value));

  render();

  return {
    refresh,
    refreshSoon,
    /** The run chosen ('' for the server's default). */
    value: () => select.value,
    /** Back to "Newest run" (the chosen run's model is gone). */
    reset() {
      select.value = '';
      refreshSoon();
    },
    /** Names may have become known: redraw the options. */
    relabel() {
      optionsKey = '';
      render();
    },
    /** For the tests: the options as [{value, text}]. */
    options: () => [...select.options].map((o) => ({ value: o.value, text: o.textContent })),
    version: () => version,
  };
}
