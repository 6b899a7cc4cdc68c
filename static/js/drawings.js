// Your own handwriting (issue 15), put together: a drawing the pad answered is labelled
// and kept on the server (the offer under the pad, drawings-offer.js), the saved ones
// are shown by digit, relabelled and deleted (the gallery, drawings-gallery.js),
// exported and imported (drawings-files.js), and "Teach now" fine-tunes the model that
// answers on them, then says what it read before and after (drawings-teach.js). This
// module passes each its elements and tells each what the others did.

import { createLabelOffer } from './drawings-offer.js';
import { createGallery } from './drawings-gallery.js';
import { createDrawingFiles } from './drawings-files.js';
import { createTeachPanel } from './drawings-teach.js';

/**
 * @param {object} options
 * @param {object} options.offer  el, right, digit, status (drawings-offer.js)
 * @param {object} options.gallery  details, count, counts, grid, status, exports,
 *   importInput (drawings-gallery.js)
 * @param {object} options.teach  button, note, result (drawings-teach.js)
 * @param {ReturnType<import('./draw.js').createDraw>} options.draw  the pad
 * @param {(runId: string) => void} [options.onTaught]  a teaching run started
 * @param {(record: object) => void} [options.onBefore]  the teaching run's figures before
 *   it trained, as an epoch 0 record (for the charts: its lines start from them)
 */
export function createDrawings({ offer, gallery, teach, draw, onTaught = null, onBefore = null,
  nameOf = null }) {
  const teachPanel = createTeachPanel({ elements: teach, draw, onTaught, onBefore, nameOf });
  const galleryView = createGallery({
    elements: { details: gallery.details, count: gallery.count, counts: gallery.counts,
      grid: gallery.grid, status: gallery.status },
    onCounts: (total, minDrawings) => teachPanel.setCounts(total, minDrawings),
  });
  createDrawingFiles({
    elements: { exports: gallery.exports, importInput: gallery.importInput, status: gallery.status },
    onImported: () => galleryView.reload(),
  });
  const labelOffer = createLabelOffer({
    elements: offer,
    draw,
    onSaved: (saved) => galleryView.added(saved),
    total: galleryView.total,
  });

  return {
    /** The pad answered: offer to keep the drawing. */
    answered: labelOffer.answered,
    /** The pad was cleared: nothing to label (the offer stays after a save). */
    cleared: labelOffer.cleared,
    /** An epoch of any run (the teaching run's is its "after"). */
    runEpoch: teachPanel.runEpoch,
    /** A run ended ("done": finished or stopped; "error": failed). */
    runEnded: teachPanel.runEnded,
    /** Colours come from CSS: repaint after a light/dark switch. */
    restyle: galleryView.restyle,
    /** For the tests: what is shown. */
    state: () => {
      const shown = galleryView.state();
      const teaching = teachPanel.state();
      return { ...shown, version: shown.version + teaching.version, offer: labelOffer.isOffered(),
        teach: teaching.teach };
    },
  };
}
