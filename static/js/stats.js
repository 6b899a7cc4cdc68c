// The latest figures above the charts: test accuracy (with the best so far), the
// smoothed batch loss, the throughput (the page's one figure of images per second) and
// the learning rate with the time elapsed. controls.js says what to show and when a
// new run starts; batch figures are written twice a second at most (a replayed history
// brings thousands at once).

import { formatDuration, formatInteger, formatNumber, formatPercent, pacedTask } from './format.js';

/**
 * @param {object} el  the figures' elements: testEl, testNoteEl, lossEl, speedEl, lrEl, elapsedEl
 */
export function createStats(el) {
  let bestTest = null;
  let speed = null;       // images per second, a moving average over batch events
  let learningRate = null;

  // Twice a second at most (batches come about 10 times a second).
  const writeBatch = pacedTask(() => {
    el.speedEl.textContent = formatInteger(speed);
    el.lrEl.textContent = formatNumber(learningRate, 3);
  }, { interval: 500 });

  function reset() {
    bestTest = null;
    speed = null;
    learningRate = null;
    el.testEl.textContent = '–';
    el.testEl.title = '';
    el.testNoteEl.textContent = 'after each epoch';
    el.lossEl.textContent = '–';
    el.speedEl.textContent = '–';
    el.lrEl.textContent = '–';
    el.elapsedEl.textContent = 'elapsed –';
  }

  return {
    reset,
    /** A batch of the run shown: its speed (averaged: per-batch speed jitters) and rate. */
    batch(b) {
      if (Number.isFinite(b.images_per_second)) {
        speed = speed == null ? b.images_per_second : 0.8 * speed + 0.2 * b.images_per_second;
      }
      if (Number.isFinite(b.learning_rate)) learningRate = b.learning_rate;
      writeBatch();
    },
    /** An epoch's test accuracy, and the best so far. */
    epoch(e) {
      if (!Number.isFinite(e.test_accuracy)) return;
      bestTest = bestTest == null ? e.test_accuracy : Math.max(bestTest, e.test_accuracy);
      el.testEl.textContent = formatPercent(e.test_accuracy);
      el.testNoteEl.textContent = `epoch ${e.epoch} · best ${formatPercent(bestTest)}`;
      el.testEl.title = Number.isFinite(e.test_correct) && Number.isFinite(e.test_total)
        ? `${formatInteger(e.test_correct)} of ${formatInteger(e.test_total)} test images` : '';
    },
    elapsed(seconds) {
      if (Number.isFinite(seconds)) el.elapsedEl.textContent = `elapsed ${formatDuration(seconds)}`;
    },
    /** The smoothed batch loss, as the loss chart computed it. */
    loss(value) {
      el.lossEl.textContent = formatNumber(value);
    },
  };
}
