// Colour contrast (WCAG 2): relative luminance, the contrast ratio of two colours, and
// the colours of a shaded cell whose text must stay readable.

/** Relative luminance of an [r, g, b] colour. */
export function luminance([r, g, b]) {
  const lin = (c) => {
    const v = c / 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
}

/** The contrast ratio of two [r, g, b] colours, 1 to 21. */
export function contrast(a, b) {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

const mix = (a, b, t) => a.map((v, i) => Math.round(v * t + b[i] * (1 - t)));

// A cell shaded in a colour over the empty cell's colour, with the text colour (dark or
// light) that reads best on it. Text must keep 4.5:1 (WCAG AA): a shade where neither
// text colour does is deepened until one does (the confusion matrix, evaluate.js).
/** The background and text colours of a cell of shade `heat` (0..1) in colour `full`
 *  over `empty`, text `dark` or `light`, whichever reads better (at least 4.5:1). */
export function cellColours(heat, full, empty, dark, light) {
  let t = Math.max(0, Math.min(1, heat));
  for (;;) {
    const bg = mix(full, empty, t);
    const onDark = contrast(bg, dark);
    const onLight = contrast(bg, light);
    if (Math.max(onDark, onLight) >= 4.5 || t >= 1) {
      return { background: `rgb(${bg.join(',')})`, color: onDark >= onLight ? 'dark' : 'light' };
    }
    t = Math.min(1, t + 0.05);
  }
}
