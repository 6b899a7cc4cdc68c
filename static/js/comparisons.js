// The comparisons under Start: several runs in one request. "CNN against fully
// connected" (the 2017 experiment: seed against seed-fc, the form's epochs) and the
// "Learning-rate sweep" (the form's settings at four learning rates), with a line that
// says what each will start; and the builder's "Race it against <preset>" (the network
// of one's own against the preset's, both with the form's settings). controls.js hands
// it the form and its request.

import { isUnavailable, setUnavailable } from './buttons.js';
import { PAGE_EVENTS } from './events.js';

// The learning-rate sweep: the form's rate times these, to one significant digit
// (0.003 -> 0.0003, 0.001, 0.003, 0.01).
const SWEEP_FACTORS = [0.1, 1 / 3, 1, 10 / 3];

/** The sweep's learning rates around `rate`. */
export function sweepRates(rate) {
  const base = Number.isFinite(rate) && rate > 0 ? rate : 0.003;
  const rates = SWEEP_FACTORS.map((f) => Math.min(100, Number((base * f).toPrecision(1))));
  return [...new Set(rates)];
}

/**
 * @param {object} options
 * @param {HTMLButtonElement} options.fcButton  "CNN against fully connected"
 * @param {HTMLButtonElement} options.lrButton  "Learning-rate sweep"
 * @param {HTMLButtonElement} [options.raceButton]  the builder's "Race it against <preset>"
 * @param {HTMLElement} options.helpEl  the line that says what they start
 * @param {HTMLFormElement} options.form  the run form (its fields' changes)
 * @param {(name: string) => HTMLInputElement} options.field  a field of the form by name
 * @param {() => object} options.collect  the form's run settings (throws on a bad value)
 * @param {() => number} options.presetRate  the chosen preset's learning rate
 * @param {() => boolean} options.isBusy  a request of the form is pending
 * @param {(text: string) => void} options.showFormError
 * @param {(runs: object[]) => Promise<void>} options.start  POST /api/comparisons
 */
export function createComparisons({ fcButton, lrButton, raceButton, helpEl, form, field, collect,
  presetRate, isBusy, showFormError, start }) {
  let maxAtOnce = null;

  function formEpochs() {
    const value = Number(field('epochs')?.value);
    return Number.isInteger(value) && value > 0 ? value : null;
  }

  function formRate() {
    const value = Number(field('learning_rate')?.value);
    return Number.isFinite(value) && value > 0 ? value : presetRate();
  }

  /** The runs of comparison `kind`: "fc" (the 2017 experiment), "lr" (a sweep) or
   *  "race" (the builder's network against its preset's). */
  function runsOf(kind) {
    if (kind === 'fc') {
      const epochs = formEpochs();
      return ['seed', 'seed-fc'].map((preset) => (epochs ? { preset, epochs } : { preset }));
    }
    const body = collect();
    if (kind === 'race') {
      if (!body.spec) {
        throw new Error(`The network in the builder is ${body.preset}'s own: change it first, then race it.`);
      }
      const against = { ...body };
      delete against.spec;
      return [body, against];
    }
    return sweepRates(body.learning_rate ?? formRate()).map((rate) => ({ ...body, learning_rate: rate }));
  }

  function describe() {
    if (raceButton) {
      const text = `Race it against ${field('preset')?.value || 'the preset'}`;
      if (raceButton.textContent !== text) raceButton.textContent = text;
    }
    if (!helpEl) return;
    const epochs = formEpochs();
    const each = epochs ? `${epochs} epoch${epochs === 1 ? '' : 's'} each (the Epochs above)` : 'each preset\'s epochs';
    const rates = sweepRates(formRate()).join(', ');
    const atOnce = maxAtOnce ? ` ${maxAtOnce} train at once; the others wait in the queue.` : '';
    helpEl.textContent = `CNN against fully connected: the seed preset's small CNN against seed-fc's `
      + `784-25-10 network, on the same 1000 images, ${each}. Learning-rate sweep: the settings above at `
      + `learning rates ${rates}.${atOnce}`;
  }

  async function startComparison(kind, button) {
    if (isBusy() || isUnavailable(button)) return;
    let runs;
    try {
      runs = runsOf(kind);
    } catch (error) {
      showFormError(error.message);
      return;
    }
    await start(runs);
  }

  fcButton?.addEventListener('click', () => startComparison('fc', fcButton));
  lrButton?.addEventListener('click', () => startComparison('lr', lrButton));
  raceButton?.addEventListener('click', () => startComparison('race', raceButton));
  form.addEventListener('input', describe);
  form.addEventListener('change', describe);
  form.addEventListener(PAGE_EVENTS.formFilled, describe);

  return {
    describe,
    /** How many runs train at once (the server's status): said in the line. */
    setMaxAtOnce(n) {
      if (Number.isFinite(n) && n !== maxAtOnce) {
        maxAtOnce = n;
        describe();
      }
    },
    /** A request of the form is pending: the buttons wait. */
    setBusy(busy) {
      setUnavailable(fcButton, busy);
      setUnavailable(lrButton, busy);
      setUnavailable(raceButton, busy);
    },
  };
}
