// The drawing pad's ink: strokes drawn with Pointer Events (mouse, touch and pen in one
// set of handlers), kept as points in 0..1 of the pad so that a resize or a change of
// device pixel ratio redraws them crisply at the new size, and the image they make for
// the server. The ink is opaque on a transparent canvas: its alpha channel, downsampled
// to SEND_SIZE x SEND_SIZE, is what POST /api/predict is sent. The pad says when a
// stroke starts, grows and ends; what is asked of the server is draw-asker.js's job.

export const SEND_SIZE = 140;   // side of the image sent (at most 200), 5 x 28
const REFERENCE_SIZE = 280;     // the pen width is given in CSS pixels of a 280 px pad

/**
 * @param {object} options
 * @param {HTMLCanvasElement} options.canvas  the pad
 * @param {HTMLInputElement} [options.penInput]  the pen width (CSS px of a 280 px pad)
 * @param {HTMLOutputElement} [options.penOutput]  the pen width shown
 * @param {() => number[]} options.ink  the ink's colour, [r, g, b]
 * @param {() => void} options.onStrokeStart  a finger or the pen touched the pad
 * @param {() => void} options.onInk  a stroke grew
 * @param {() => void} options.onStrokeEnd  the stroke ended
 */
export function createDrawPad({ canvas, penInput = null, penOutput = null, ink, onStrokeStart, onInk, onStrokeEnd }) {
  const ctx = canvas.getContext('2d');
  const sampler = document.createElement('canvas');
  sampler.width = SEND_SIZE;
  sampler.height = SEND_SIZE;
  const samplerCtx = sampler.getContext('2d', { willReadFrequently: true });
  let strokes = [];          // {width: CSS px of a 280 px pad, points: [[x, y] in 0..1]}
  let current = null;        // the stroke being drawn
  let pointerId = null;

  function penWidth() {
    const value = Number(penInput?.value);
    return Number.isFinite(value) && value > 0 ? value : 22;
  }

  function strokeStyle(stroke) {
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.lineWidth = (stroke.width / REFERENCE_SIZE) * canvas.width;
    ctx.strokeStyle = `rgb(${ink().join(',')})`;
    ctx.fillStyle = ctx.strokeStyle;
  }

  /** Draw `stroke` from point `from` on (a lone point is a dot). */
  function paintStroke(stroke, from = 0) {
    const { points } = stroke;
    const size = canvas.width;
    strokeStyle(stroke);
    if (points.length === 1) {
      ctx.beginPath();
      ctx.arc(points[0][0] * size, points[0][1] * size, ctx.lineWidth / 2, 0, Math.PI * 2);
      ctx.fill();
      return;
    }
    const start = Math.max(0, from - 1);
    ctx.beginPath();
    ctx.moveTo(points[start][0] * size, points[start][1] * size);
    for (let i = start + 1; i < points.length; i++) ctx.lineTo(points[i][0] * size, points[i][1] * size);
    ctx.stroke();
  }

  function redraw() {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    for (const stroke of strokes) paintStroke(stroke);
  }

  /** Match the backing store to the displayed size times the device pixel ratio. */
  function resize() {
    const cssSize = canvas.getBoundingClientRect().width;
    if (!cssSize) return;
    const px = Math.max(1, Math.round(cssSize * (window.devicePixelRatio || 1)));
    if (canvas.width !== px || canvas.height !== px) {
      canvas.width = px;
      canvas.height = px;
      redraw();
    }
  }

  function pointOf(event) {
    const r = canvas.getBoundingClientRect();
    const x = (event.clientX - r.left) / (r.width || 1);
    const y = (event.clientY - r.top) / (r.height || 1);
    return [Math.min(1.02, Math.max(-0.02, x)), Math.min(1.02, Math.max(-0.02, y))];
  }

  function onPointerDown(event) {
    if (pointerId !== null) return;                          // one finger draws at a time
    if (event.pointerType === 'mouse' && event.button !== 0) return;
    event.preventDefault();
    pointerId = event.pointerId;
    try {
      canvas.setPointerCapture(event.pointerId);
    } catch { /* an already released pointer */ }
    current = { width: penWidth(), points: [pointOf(event)] };
    strokes.push(current);
    paintStroke(current);
    onStrokeStart();
  }

  function onPointerMove(event) {
    if (event.pointerId !== pointerId || !current) return;
    event.preventDefault();
    const from = current.points.length;
    const batch = typeof event.getCoalescedEvents === 'function' ? event.getCoalescedEvents() : [];
    for (const e of batch.length ? batch : [event]) current.points.push(pointOf(e));
    paintStroke(current, from);
    onInk();
  }

  function onPointerEnd(event) {
    if (event.pointerId !== pointerId) return;
    if (event.cancelable) event.preventDefault();
    pointerId = null;   // the capture is released by the browser after pointerup/cancel
    current = null;
    onStrokeEnd();
  }

  // Touch-action: none already keeps a finger from scrolling; these stop older
  // browsers (and long-press menus) too.
  function onTouch(event) {
    if (event.cancelable) event.preventDefault();
  }

  const active = { passive: false };
  canvas.addEventListener('pointerdown', onPointerDown, active);
  canvas.addEventListener('pointermove', onPointerMove, active);
  canvas.addEventListener('pointerup', onPointerEnd, active);
  canvas.addEventListener('pointercancel', onPointerEnd, active);
  canvas.addEventListener('lostpointercapture', onPointerEnd);
  canvas.addEventListener('touchstart', onTouch, active);
  canvas.addEventListener('touchmove', onTouch, active);
  canvas.addEventListener('contextmenu', (event) => event.preventDefault());

  if (typeof ResizeObserver === 'function') new ResizeObserver(resize).observe(canvas);
  window.addEventListener('resize', resize);
  // A zoom or a move to another screen changes the pixel ratio without a resize event.
  (function watchRatio() {
    const query = window.matchMedia(`(resolution: ${window.devicePixelRatio || 1}dppx)`);
    query.addEventListener('change', () => {
      resize();
      watchRatio();
    }, { once: true });
  }());
  resize();

  if (penInput) {
    const showPen = () => {
      if (penOutput) penOutput.textContent = String(penWidth());
    };
    penInput.addEventListener('input', showPen);
    showPen();
  }

  /** The pad's alpha channel at SEND_SIZE x SEND_SIZE, row by row, as base64 of its
   *  bytes, or null when blank. */
  function sample() {
    if (!strokes.length) return null;
    samplerCtx.clearRect(0, 0, SEND_SIZE, SEND_SIZE);
    samplerCtx.imageSmoothingEnabled = true;
    samplerCtx.imageSmoothingQuality = 'high';
    samplerCtx.drawImage(canvas, 0, 0, canvas.width, canvas.height, 0, 0, SEND_SIZE, SEND_SIZE);
    const { data } = samplerCtx.getImageData(0, 0, SEND_SIZE, SEND_SIZE);
    let inked = false;
    let binary = '';
    for (let i = 3; i < data.length; i += 4) {
      if (data[i]) inked = true;
      binary += String.fromCharCode(data[i]);
    }
    return inked ? btoa(binary) : null;
  }

  return {
    sample,
    /** Nothing has been drawn since the last clear. */
    isBlank: () => !strokes.length,
    /** A stroke is being drawn. */
    isDrawing: () => pointerId !== null,
    /** Repaint the strokes (the ink's colour changed). */
    redraw,
    clear() {
      strokes = [];
      current = null;
      if (pointerId !== null) {
        try {
          canvas.releasePointerCapture(pointerId);
        } catch { /* already released */ }
        pointerId = null;
      }
      redraw();
    },
  };
}
