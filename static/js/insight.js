// The insight panels (issue 6): the evaluation of every epoch (confusion matrix, its
// cells' images, the gallery of mistakes) and the weight and gradient histograms.
// main.js hands it the `evaluation` and `histograms` events, tells it when a new run
// starts and when the theme changed (the canvases take their colours from the CSS).

import { createEvaluate } from './evaluate.js';
import { createHistograms } from './histograms.js';

/**
 * @param {object} options
 * @param {object} options.evaluateElements  createEvaluate's elements (evaluate.js)
 * @param {object} options.histogramElements  createHistograms' elements (histograms.js)
 */
export function createInsight({ evaluateElements, histogramElements }) {
  const evaluate = createEvaluate(evaluateElements);
  const histograms = createHistograms(histogramElements);
  let runId = null;

  /** Show run `newRunId`'s panels, empty until its events come (`text`: why not yet). */
  function reset(newRunId = null, text = '') {
    runId = newRunId;
    evaluate.reset(text);
    histograms.reset(text);
  }

  /** Events of another run than the one shown start the panels afresh. */
  function follow(event) {
    if (event.run_id && event.run_id !== runId) reset(event.run_id);
  }

  reset();

  return {
    reset,
    restyle() {
      evaluate.restyle();
      histograms.restyle();
    },
    handlers: {
      evaluation(event) {
        follow(event);
        evaluate.update(event);
      },
      histograms(event) {
        follow(event);
        histograms.update(event);
      },
    },
    /** Read-only hooks for the browser tests. */
    hooks: {
      evaluation: () => evaluate.state(),
      histograms: () => histograms.state(),
    },
  };
}
