// The gallery of mistakes under the confusion matrix: the misclassified test images an
// `evaluation` event carries (the most confident first), and how many there were in
// all. evaluate.js hands it each event it draws.

import { digitFigure, inkColour, repaintDigits } from './digits.js';
import { formatInteger, formatPercent, placeholder } from './format.js';

/**
 * @param {object} options
 * @param {HTMLElement} options.galleryEl  the images
 * @param {HTMLElement} options.countEl  how many were misclassified
 */
export function createMistakes({ galleryEl, countEl }) {
  const emptyText = galleryEl.textContent.trim() || 'The mistakes appear after the first epoch.';
  let items = [];          // the images shown, for a repaint

  return {
    /** The mistakes of evaluation `event`. */
    show(event) {
      items = Array.isArray(event.misclassified) ? event.misclassified : [];
      const wrong = Number.isInteger(event.misclassified_total) ? event.misclassified_total : items.length;
      const total = Number.isInteger(event.test_total) ? event.test_total : null;
      const share = total ? ` (${formatPercent(wrong / total, 2)})` : '';
      const of = total !== null ? ` of ${formatInteger(total)}` : '';
      const showing = items.length && items.length < wrong ? ` · the ${items.length} most confident shown` : '';
      countEl.textContent = `${formatInteger(wrong)}${of} test images misclassified${share}${showing}`;
      countEl.dataset.count = String(wrong);
      const ink = inkColour();
      if (items.length) galleryEl.replaceChildren(...items.map((item) => digitFigure(item, ink)));
      else placeholder(galleryEl, wrong ? 'No images were sent.' : 'No mistakes: every test image was read right.', 'evaluate-empty');
    },
    /** Nothing to show ('' for a run with no evaluation yet, else why not). */
    reset(text = '') {
      items = [];
      placeholder(galleryEl, text ? '' : emptyText, 'evaluate-empty');
      countEl.textContent = '';
      delete countEl.dataset.count;
    },
    restyle() {
      repaintDigits(galleryEl, items, inkColour());
    },
  };
}
