// Asking the server what the pad's drawing is (POST /api/predict), as the person draws.
// The image goes as its bytes (0..255, ink high) in base64 (`pixels` and `width`): a
// fifth of the JSON of rows of numbers, and far cheaper for the server to read while it
// trains. While a stroke is drawn, at most one request every DEBOUNCE_MS, never more
// than one in flight; when a stroke ends, one more with `explain: true` (the feature
// maps). An answer that comes back after the pad was cleared (`cancel`) is dropped.

import { api, ApiError } from './api.js';
import { SEND_SIZE } from './draw-pad.js';

const DEBOUNCE_MS = 150;

/** A friendly sentence for a failed prediction request. */
function describeFailure(error) {
  if (!(error instanceof ApiError)) return 'The prediction failed.';
  if (error.status === 0) return 'Cannot reach the server.';
  if (error.status === 404 || error.status === 405) return 'This server cannot read drawings yet.';
  if (error.status === 413) return 'The drawing is too big to send.';
  if (error.status === 422) return error.message || 'The network cannot read this drawing.';
  if (error.status === 503) return error.message || 'No model is ready to read the drawing yet.';
  return error.message || `The server answered ${error.status}.`;
}

/**
 * @param {object} options
 * @param {ReturnType<import('./draw-pad.js').createDrawPad>} options.pad  the drawing
 * @param {HTMLInputElement} [options.rawWeightsInput]  ask the raw weights, not the average
 * @param {ReturnType<import('./chooser.js').createModelChooser>} [options.chooser]  "Answered by"
 * @param {(id: string) => string} [options.nameOf]  a run's name
 * @param {(answer: object, explain: boolean) => void} options.onAnswer
 * @param {(text: string) => void} options.onFailure  why there is no answer
 */
export function createPredictionAsker({ pad, rawWeightsInput = null, chooser = null, nameOf = null,
  onAnswer, onFailure }) {
  let timer = 0;
  let inFlight = false;
  let dirty = false;         // ink not yet sent
  let wantExplain = false;   // a stroke ended: the next request asks for feature maps
  let generation = 0;        // bumped by cancel: answers of an older generation are dropped

  /** Which model answers: `weights`, and the run chosen under "Answered by" as `run_id`
   *  (none: the server's default, the newest run). */
  function answeredBy() {
    // The run's moving average of its weights answers unless the raw ones are asked for.
    const asked = { weights: rawWeightsInput?.checked ? 'raw' : 'averaged' };
    const runId = chooser ? chooser.value() : '';
    if (runId) asked.run_id = runId;
    return asked;
  }

  /** More ink: ask soon. */
  function schedule() {
    dirty = true;
    if (!timer && !inFlight) timer = setTimeout(send, DEBOUNCE_MS);
  }

  /** A stroke ended (or the model changed): ask now, with the feature maps. */
  function finish() {
    dirty = true;
    wantExplain = true;
    clearTimeout(timer);
    timer = 0;
    if (!inFlight) send();
  }

  async function send() {
    timer = 0;
    if (!dirty || inFlight) return;
    dirty = false;
    const explain = wantExplain && !pad.isDrawing();
    if (explain) wantExplain = false;
    const pixels = pad.sample();
    if (!pixels) return;                                    // nothing drawn: nothing to ask
    const mine = generation;
    inFlight = true;
    try {
      const body = { pixels, width: SEND_SIZE, explain, ...answeredBy() };
      const answer = await api('POST', '/api/predict', body);
      if (mine === generation) onAnswer(answer, explain);
    } catch (error) {
      if (mine === generation) {
        const chosen = chooser ? chooser.value() : '';
        if (chosen && error instanceof ApiError && error.status === 404) {
          // That run's model is gone (it failed, or ended too long ago): the newest answers.
          chooser.reset();
          onFailure(`${nameOf ? nameOf(chosen) : 'That run'} no longer answers: asking the newest run instead.`);
          dirty = true;
          wantExplain = wantExplain || explain;
        } else {
          onFailure(describeFailure(error));
        }
      }
    } finally {
      inFlight = false;
      if (dirty) {
        if (!pad.isDrawing()) send();
        else if (!timer) timer = setTimeout(send, DEBOUNCE_MS);
      }
    }
  }

  return {
    schedule,
    finish,
    answeredBy,
    /** Ink drawn since the last request was sent. */
    hasUnsent: () => dirty,
    /** The pad was cleared: nothing more to send, and answers on their way are dropped. */
    cancel() {
      generation += 1;
      clearTimeout(timer);
      timer = 0;
      dirty = false;
      wantExplain = false;
    },
  };
}
