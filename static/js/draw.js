// The drawing pad and what the network makes of the drawing, put together: the pad's
// ink (draw-pad.js) is sent to the server as it is drawn (draw-asker.js), and the
// answer is shown beside it (draw-answer.js). Clear empties all three; the pad's
// colours follow the theme.

import { cssVar, parseColour } from './format.js';
import { palette as filterPalette } from './filters.js';
import { createDrawPad, SEND_SIZE } from './draw-pad.js';
import { createPredictionAsker } from './draw-asker.js';
import { createAnswerView } from './draw-answer.js';

function colours() {
  return {
    ink: parseColour(cssVar('--draw-ink'), [17, 24, 39]),
    axis: parseColour(cssVar('--chart-axis'), [91, 101, 118]),
    ...filterPalette(),
  };
}

export function createDraw({
  canvas, clearButton, penInput, penOutput, predictionEl, modelEl, probabilitiesEl,
  inputCanvas, mapsEl, errorEl, rawWeightsInput = null, chooser = null, nameOf = null,
  onAnswer = null, onClear = null,
}) {
  let palette = colours();
  const answerView = createAnswerView({
    elements: { prediction: predictionEl, model: modelEl, probabilities: probabilitiesEl,
      inputCanvas, maps: mapsEl, error: errorEl },
    colours: () => palette,
    nameOf,
  });
  const pad = createDrawPad({
    canvas,
    penInput,
    penOutput,
    ink: () => palette.ink,
    onStrokeStart: () => {
      answerView.hideError();
      answerView.markStale();
      asker.schedule();
    },
    onInk: () => asker.schedule(),
    onStrokeEnd: () => asker.finish(),
  });
  const asker = createPredictionAsker({
    pad,
    rawWeightsInput,
    chooser,
    nameOf,
    onAnswer: (answer, explain) => {
      const current = !asker.hasUnsent() && !pad.isDrawing();
      if (answerView.show(answer, { explain, current }) && onAnswer) onAnswer(answer);
    },
    onFailure: (text) => answerView.showError(text),
  });

  function clear() {
    asker.cancel();
    pad.clear();
    answerView.clear();
    if (onClear) onClear();
  }

  /** Ask again about the drawing on the pad, feature maps included. */
  function askAgain() {
    if (!pad.isBlank()) asker.finish();
  }

  clearButton.addEventListener('click', clear);
  // Switching weights asks again about the drawing on the pad.
  rawWeightsInput?.addEventListener('change', askAgain);

  return {
    clear,
    /** Another model was chosen. */
    askAgain,
    /** The drawing on the pad as /api/predict is sent it, and which model answers it
     *  (`pixels`, `width`, `weights`, `run_id`), or null when the pad is blank. */
    drawing() {
      const pixels = pad.sample();
      return pixels ? { pixels, width: SEND_SIZE, ...asker.answeredBy() } : null;
    },
    answeredBy: asker.answeredBy,
    /** The model that answered last (for the tests). */
    lastModel: answerView.lastModel,
    /** Colours come from CSS variables: repaint after a light/dark switch. */
    restyle() {
      palette = colours();
      pad.redraw();
      answerView.restyle();
    },
    predictions: answerView.count,
    layerStages: answerView.layerStages,
    lastPrediction: answerView.lastDigit,
  };
}
