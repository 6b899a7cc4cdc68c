// A network's spec as data (issue 14's builder): the engine's layer types read from the
// page, a spec completed with the engine's defaults so that two specs of one network
// compare equal, and a spec as text for the JSON view and back. Pure functions, no DOM
// but #builder's data-schema: the builder's other modules (builder-layers.js,
// builder-costs.js, builder-json.js) and builder.js share them.

export const isObject = (value) => value !== null && typeof value === 'object' && !Array.isArray(value);
export const clone = (value) => JSON.parse(JSON.stringify(value));

/** #builder's data-schema: layers as [[type, [[key, default], ...]], ...] (the engine's
 *  order) -> {type: {key: default}} (objects keep that order). */
export function readSchema(details) {
  try {
    const schema = JSON.parse(details.dataset.schema || '{}');
    if (Array.isArray(schema.layers) && isObject(schema.defaults)) {
      return { ...schema, layers: Object.fromEntries(schema.layers.map(([kind, keys]) => [kind, Object.fromEntries(keys)])) };
    }
  } catch {
    // an unreadable schema: the builder offers nothing
  }
  return { layers: {}, losses: [], inits: [], defaults: {} };
}

/** `spec` with every default filled in, the engine's keys first in its order: two
 *  specs of the same network compare equal. Anything unknown is kept as it is. */
export function completeSpec(spec, schema) {
  if (!isObject(spec)) return spec;
  const out = {};
  for (const key of ['input', 'layers', 'loss', 'init']) {
    const value = key === 'layers' && Array.isArray(spec.layers)
      ? spec.layers.map((layer) => completeLayer(layer, schema)) : spec[key];
    if (value !== undefined) out[key] = value;
    else if (schema.defaults[key] !== undefined) out[key] = clone(schema.defaults[key]);
  }
  for (const [key, value] of Object.entries(spec)) if (!(key in out)) out[key] = value;
  return out;
}

export function completeLayer(layer, schema) {
  const keys = isObject(layer) ? schema.layers[layer.type] : null;
  if (!keys) return layer;
  const out = { type: layer.type };
  for (const [key, value] of Object.entries(keys)) {
    if (layer[key] !== undefined) out[key] = layer[key];
    else if (value !== null) out[key] = value;
  }
  for (const [key, value] of Object.entries(layer)) if (!(key in out)) out[key] = value;
  return out;
}

/** Whether specs `a` and `b` are the same network. */
export function sameNetwork(a, b, schema) {
  return JSON.stringify(completeSpec(a, schema)) === JSON.stringify(completeSpec(b, schema));
}

function compact(value) {
  if (Array.isArray(value)) return `[${value.map(compact).join(', ')}]`;
  if (isObject(value)) {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${compact(v)}`).join(', ')}}`;
  }
  return JSON.stringify(value);
}

/** A spec as the README writes one: a layer a line. */
export function formatSpec(spec) {
  if (!isObject(spec)) return JSON.stringify(spec, null, 2);
  const lines = Object.entries(spec).map(([key, value]) => {
    if (key === 'layers' && Array.isArray(value) && value.length) {
      return `  "layers": [\n${value.map((layer) => `    ${compact(layer)}`).join(',\n')}\n  ]`;
    }
    return `  ${JSON.stringify(key)}: ${compact(value)}`;
  });
  return `{\n${lines.join(',\n')}\n}`;
}

/** The JSON view's text as a spec the form can show, or why not. */
export function parseSpec(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { error: `Not JSON: ${error.message}` };
  }
  if (!isObject(value)) return { error: 'A network is a JSON object: {"layers": [...], "loss": ..., "init": ...}.' };
  if (!Array.isArray(value.layers)) {
    return { error: '"layers" must be a list of layers: [{"type": "conv", "filters": 8}, ...].' };
  }
  return { spec: value };
}

/** A layer's shape as "8×28×28" ('?' when the server did not say). */
export const shapeText = (shape) => (Array.isArray(shape) ? shape.join('×') : '?');
