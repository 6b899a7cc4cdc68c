// Small pictures of MNIST test images, as the server sends them: base64 of 784 bytes,
// row-major 28x28, 0 = background, 255 = ink. Each is painted as ink of that alpha on a
// transparent 28x28 canvas (the paper is the canvas's CSS background), and shown in a
// <figure> with what the network answered.

import { cssVar, formatPercent, parseColour } from './format.js';

export const SIDE = 28;

/** The 784 bytes of a base64 string, or null when it is not one 28x28 image. */
export function decodePixels(base64) {
  if (typeof base64 !== 'string') return null;
  let text;
  try {
    text = atob(base64);
  } catch {
    return null;
  }
  if (text.length !== SIDE * SIDE) return null;
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

export function inkColour() {
  return parseColour(cssVar('--draw-ink'), [17, 24, 39]);
}

/** Paint 784 bytes into a 28x28 canvas as ink of alpha byte/255. */
export function paintDigit(canvas, bytes, ink) {
  canvas.width = SIDE;
  canvas.height = SIDE;
  const ctx = canvas.getContext('2d');
  const image = ctx.createImageData(SIDE, SIDE);
  const { data } = image;
  for (let i = 0; i < bytes.length; i++) {
    data[i * 4] = ink[0];
    data[i * 4 + 1] = ink[1];
    data[i * 4 + 2] = ink[2];
    data[i * 4 + 3] = bytes[i];
  }
  ctx.putImageData(image, 0, 0);
}

/** "true 4, predicted 9 with 87.1% probability" */
export function describeDigit({ label, predicted, probability }) {
  const sure = Number.isFinite(probability) ? ` with ${formatPercent(probability, 1)} probability` : '';
  return `true ${label}, predicted ${predicted}${sure}`;
}

/**
 * A <figure class="digit"> for one test image {index, label, predicted, probability,
 * pixels}: the image, then "4→9" (or "4" when right) and the probability.
 * Its dataset carries label, predicted and index for the tests and the styles.
 */
export function digitFigure(item, ink) {
  const figure = document.createElement('figure');
  const right = item.label === item.predicted;
  figure.className = `digit${right ? ' is-right' : ' is-wrong'}`;
  figure.dataset.label = String(item.label);
  figure.dataset.predicted = String(item.predicted);
  if (Number.isInteger(item.index)) figure.dataset.index = String(item.index);

  const canvas = document.createElement('canvas');
  canvas.className = 'digit-canvas';
  canvas.setAttribute('role', 'img');
  const where = Number.isInteger(item.index) ? `test image ${item.index}: ` : '';
  canvas.setAttribute('aria-label', `${where}${describeDigit(item)}`);
  const bytes = decodePixels(item.pixels);
  if (bytes) paintDigit(canvas, bytes, ink);
  else canvas.classList.add('is-missing');

  const caption = document.createElement('figcaption');
  const answer = document.createElement('span');
  answer.className = 'digit-answer';
  answer.textContent = right ? `${item.label}` : `${item.label}→${item.predicted}`;
  answer.title = right ? `true ${item.label}, read right` : `true ${item.label}, read as ${item.predicted}`;
  const sure = document.createElement('span');
  sure.className = 'digit-probability';
  sure.textContent = formatPercent(item.probability, 0);
  caption.append(answer, ' ', sure);
  figure.title = describeDigit(item);
  figure.append(canvas, caption);
  return figure;
}

/** Repaint every .digit canvas under `root` (after a light/dark switch) from `items`. */
export function repaintDigits(root, items, ink) {
  const canvases = root.querySelectorAll('canvas.digit-canvas');
  canvases.forEach((canvas, i) => {
    const bytes = decodePixels(items[i]?.pixels);
    if (bytes) paintDigit(canvas, bytes, ink);
  });
}
