// What the network makes of the drawing, shown beside the pad: its digit, the ten
// probabilities, the 28x28 input it read, which model answered (and with which
// weights), every layer's output (layers.js), and the line that says why there is no
// answer. It shows what it is handed (draw.js); asking is draw-asker.js's job.

import { formatPercent } from './format.js';
import { createLayerView, paintMap } from './layers.js';

/** "averaged weights", "raw weights" or '': which weights of the model answered. */
export function describeWeights(model) {
  if (model?.weights === 'averaged') return 'averaged weights';
  if (model?.weights === 'raw') return 'raw weights';
  return '';
}

/** "seed #3f2a · epoch 2 · training · averaged weights", "bundled model · raw weights", …:
 * which model answered, and with which of its weights. `nameOf(runId)` names a run. */
export function describeModel(model, nameOf = null) {
  if (!model || typeof model !== 'object') return '';
  const parts = [];
  if (model.source === 'bundled') parts.push('bundled model');
  else if (model.source === 'uploaded' && !model.run_id) parts.push(model.description || 'uploaded model');
  else {
    const id = model.run_id ? String(model.run_id) : '';
    parts.push(id ? (nameOf ? nameOf(id) : `run ${id.slice(0, 4)}…`) : 'latest run');
    if (Number.isFinite(model.epoch)) parts.push(`epoch ${model.epoch}`);
    if (model.source === 'training') parts.push('training');
  }
  const weights = describeWeights(model);
  if (weights) parts.push(weights);
  return parts.join(' · ');
}

/**
 * @param {object} options
 * @param {object} options.elements  prediction, model, probabilities (li[data-digit] rows),
 *   inputCanvas, maps, error
 * @param {() => object} options.colours  the palette (ink and the filters' colours)
 * @param {(id: string) => string} [options.nameOf]  a run's name
 */
export function createAnswerView({ elements: el, colours, nameOf = null }) {
  const rows = Array.from(el.probabilities.querySelectorAll('li[data-digit]'))
    .sort((a, b) => Number(a.dataset.digit) - Number(b.dataset.digit))
    .map((li) => ({ li, fill: li.querySelector('.prob-fill'), value: li.querySelector('.prob-value') }));
  // Every layer's output for the drawing, in order (layers.js).
  const layerView = createLayerView({ container: el.maps, colours });
  let shown = 0;
  let lastAnswer = null;     // for a redraw after a theme change

  function showError(text) {
    el.error.textContent = text;
    el.error.hidden = false;
  }

  function hideError() {
    el.error.hidden = true;
    el.error.textContent = '';
  }

  function paintInput() {
    if (lastAnswer && Array.isArray(lastAnswer.input)) paintMap(el.inputCanvas, lastAnswer.input, colours().ink, false);
  }

  /** Show `answer`; `explain`: it has the feature maps, `current`: no ink came since it
   *  was asked. False for an answer this page cannot read. */
  function show(answer, { explain, current }) {
    if (!answer || typeof answer !== 'object' || !Number.isInteger(answer.digit)) {
      showError('The server sent an answer this page cannot read.');
      return false;
    }
    hideError();
    el.prediction.textContent = String(answer.digit);
    const probs = Array.isArray(answer.probabilities) ? answer.probabilities : [];
    rows.forEach((row, digit) => {
      const p = Number(probs[digit]);
      const known = Number.isFinite(p);
      row.fill.style.setProperty('--p', known ? String(Math.max(0, Math.min(1, p))) : '0');
      row.value.textContent = known ? formatPercent(p, 1) : '–';
      row.li.classList.toggle('is-top', digit === answer.digit);
    });
    lastAnswer = answer;
    paintInput();
    el.model.textContent = describeModel(answer.model, nameOf);
    el.model.title = answer.model?.description || '';
    if (explain) {
      if (Array.isArray(answer.feature_maps)) layerView.show(answer);
      if (current) el.maps.classList.remove('is-stale');
    }
    shown += 1;
    return true;
  }

  function clear() {
    hideError();
    el.prediction.textContent = '';
    rows.forEach((row) => {
      row.fill.style.setProperty('--p', '0');
      row.value.textContent = '–';
      row.li.classList.remove('is-top');
    });
    el.inputCanvas.getContext('2d').clearRect(0, 0, el.inputCanvas.width, el.inputCanvas.height);
    el.model.textContent = '';
    el.model.title = '';
    el.maps.classList.remove('is-stale');
    layerView.clear();
    lastAnswer = null;
  }

  return {
    show,
    clear,
    showError,
    hideError,
    /** The layers' outputs no longer match the pad (more ink). */
    markStale: () => el.maps.classList.add('is-stale'),
    /** Colours come from CSS variables: repaint after a light/dark switch. */
    restyle() {
      paintInput();
      layerView.restyle();
    },
    /** For the tests: answers shown, the last digit and model, the layers drawn. */
    count: () => shown,
    lastDigit: () => (lastAnswer ? lastAnswer.digit : null),
    lastModel: () => (lastAnswer ? { ...lastAnswer.model } : null),
    layerStages: () => layerView.stages(),
  };
}
