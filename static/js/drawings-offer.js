// The labelling offer under the pad (issue 15): "Right: it is a 4" and "It is a 0..9"
// (ten buttons, one press saves the pad's drawing with that label, POST /api/drawings).
// A saved drawing clears the pad for the next one; the offer stays, its buttons
// unavailable until the next answer, so the keyboard's focus is never lost.

import { api } from './api.js';
import { isUnavailable, setUnavailable } from './buttons.js';
import { describeFailure, plural, showStatus } from './drawings-text.js';

/**
 * @param {object} options
 * @param {object} options.elements  el (the offer, with its button[data-label]s), right,
 *   digit, status
 * @param {ReturnType<import('./draw.js').createDraw>} options.draw  the pad
 * @param {(saved: object) => void} options.onSaved  a drawing was saved (the server's summary)
 * @param {() => number} options.total  how many drawings are kept (after a save)
 */
export function createLabelOffer({ elements: offer, draw, onSaved, total }) {
  const digitButtons = [...offer.el.querySelectorAll('button[data-label]')];
  const offerButtons = [offer.right, ...digitButtons];
  let answer = null;            // the pad's latest answer
  let saving = false;
  let keepOffer = false;        // the pad is being cleared after a save

  function offerAvailable() {
    const can = Boolean(answer) && !saving;
    for (const button of offerButtons) setUnavailable(button, !can);
    if (saving) offer.el.setAttribute('aria-busy', 'true');
    else offer.el.removeAttribute('aria-busy');
  }

  async function save(label) {
    if (!answer || saving) return;
    const body = draw.drawing();
    if (!body) return;
    saving = true;
    offerAvailable();
    showStatus(offer.status, `Saving as a ${label}…`);
    try {
      const saved = await api('POST', '/api/drawings', { ...body, label });
      onSaved(saved);
      showStatus(offer.status, `Saved as a ${saved.label} · ${plural(total(), 'drawing')}`
        + `${saved.held_out ? ' (this one is held out)' : ''}. Draw the next one.`);
      keepOffer = true;
      draw.clear();
    } catch (error) {
      showStatus(offer.status, describeFailure(error, 'save the drawing'), true);
    } finally {
      keepOffer = false;
      saving = false;
      offerAvailable();
    }
  }

  offer.right.addEventListener('click', () => {
    if (!isUnavailable(offer.right) && answer) save(answer.digit);
  });
  for (const button of digitButtons) {
    button.addEventListener('click', () => {
      if (!isUnavailable(button)) save(Number(button.dataset.label));
    });
  }

  return {
    /** The pad answered: offer to keep the drawing. */
    answered(a) {
      answer = a;
      offer.digit.textContent = `: it is a ${a.digit}`;
      offer.el.hidden = false;
      offerAvailable();
    },
    /** The pad was cleared: nothing to label (the offer stays after a save). */
    cleared() {
      answer = null;
      offer.digit.textContent = '';
      if (!keepOffer) offer.el.hidden = true;
      offerAvailable();
    },
    /** Shown with an answer to label (for the tests). */
    isOffered: () => !offer.el.hidden && Boolean(answer),
  };
}
