// The Draw canvas's 28x28 image, made in the browser exactly as lenet_core/preprocess.py's
// digit_from_rgba makes it in Python: ink from the pixels, the ink's bounding box scaled to fit
// 20x20 with Pillow's Lanczos filter (ported below, step for step, so both give the same numbers),
// then the centre of mass moved to the middle of the 28x28 field. The tests compare the two in
// Chromium; a change here or there must keep them equal.

const DIGIT_SIZE = 28;
const DIGIT_BOX = 20;
const INK_THRESHOLD = 0.1;
const HALF_UP = 0.5 + 1e-4;

// Python's round(): halves go to the even neighbour (round(10.5) is 10), which Math.round does not.
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// preprocess.ink_from_rgba: luminance times alpha; dark strokes on a transparent canvas use alpha.
function inkFromRGBA(rgba, width, height) {
  const n = width * height;
  const ink = new Float32Array(n);
  let most = 0, leastAlpha = 1;
  for (let i = 0; i < n; i++) {
    const alpha = rgba[4 * i + 3] / 255;
    ink[i] = ((0.299 * rgba[4 * i] + 0.587 * rgba[4 * i + 1] + 0.114 * rgba[4 * i + 2]) / 255) * alpha;
    if (ink[i] > most) most = ink[i];
    if (alpha < leastAlpha) leastAlpha = alpha;
  }
  if (most < INK_THRESHOLD && leastAlpha < INK_THRESHOLD) {
    for (let i = 0; i < n; i++) ink[i] = rgba[4 * i + 3] / 255;
  }
  return ink;
}

function sinc(x) {
  if (x === 0) return 1;
  x *= Math.PI;
  return Math.sin(x) / x;
}

function lanczos(x) {
  return -3 <= x && x < 3 ? sinc(x) * sinc(x / 3) : 0;
}

// Pillow's precompute_coeffs (src/libImaging/Resample.c): for each output pixel, the first input
// pixel it reads, how many, and their normalised weights. A shrinking filter widens with the scale.
function resampleCoeffs(inSize, outSize) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 3 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Float64Array(outSize * ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    let xmin = Math.trunc(center - support + 0.5);  // C's (int) cast
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let total = 0;
    for (let x = 0; x < xmax; x++) {
      const w = lanczos((x + xmin - center + 0.5) * ss);
      weights[xx * ksize + x] = w;
      total += w;
    }
    if (total !== 0) for (let x = 0; x < xmax; x++) weights[xx * ksize + x] /= total;
    bounds[2 * xx] = xmin;
    bounds[2 * xx + 1] = xmax;
  }
  return { ksize, bounds, weights };
}

// Image.resize(..., LANCZOS) of a float ("F" mode) image: a horizontal pass, then a vertical one,
// each summed in double precision and stored as float32, as Pillow does; a pass is skipped where
// that side keeps its size. (Pillow 13 runs the vertical pass first for some tall images, which
// changes the last bit of a few values: far below the 0.02 the tests allow.)
function resizeLanczos(src, w, h, newW, newH) {
  let img = src, width = w;
  if (newW !== w) {
    const { ksize, bounds, weights } = resampleCoeffs(w, newW);
    const out = new Float32Array(newW * h);
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < newW; xx++) {
        const xmin = bounds[2 * xx], count = bounds[2 * xx + 1];
        let sum = 0;
        for (let x = 0; x < count; x++) sum += img[y * width + x + xmin] * weights[xx * ksize + x];
        out[y * newW + xx] = sum;
      }
    }
    img = out;
    width = newW;
  }
  if (newH !== h) {
    const { ksize, bounds, weights } = resampleCoeffs(h, newH);
    const out = new Float32Array(width * newH);
    for (let yy = 0; yy < newH; yy++) {
      const ymin = bounds[2 * yy], count = bounds[2 * yy + 1];
      for (let x = 0; x < width; x++) {
        let sum = 0;
        for (let y = 0; y < count; y++) sum += img[(y + ymin) * width + x] * weights[yy * ksize + y];
        out[yy * width + x] = sum;
      }
    }
    img = out;
  }
  return img;
}

// digit_from_rgba: a Float32Array of 28*28 values in [0, 1] (ink = 1), or null for an empty canvas.
function digitFromRGBA(rgba, width, height) {
  const ink = inkFromRGBA(rgba, width, height);
  let top = height, bottom = -1, left = width, right = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (ink[y * width + x] > INK_THRESHOLD) {
        if (y < top) top = y;
        bottom = y;
        if (x < left) left = x;
        if (x > right) right = x;
      }
    }
  }
  if (bottom < 0) return null;
  const h = bottom - top + 1, w = right - left + 1;
  const crop = new Float32Array(w * h);
  for (let y = 0; y < h; y++) crop.set(ink.subarray((top + y) * width + left, (top + y) * width + left + w), y * w);

  const scale = DIGIT_BOX / Math.max(h, w);
  const newW = Math.max(1, roundHalfEven(w * scale)), newH = Math.max(1, roundHalfEven(h * scale));
  const patch = resizeLanczos(crop, w, h, newW, newH);
  let most = 0;
  for (let i = 0; i < patch.length; i++) {
    if (patch[i] < 0) patch[i] = 0;  // Lanczos rings below zero
    if (patch[i] > most) most = patch[i];
  }
  let total = 0, sy = 0, sx = 0;
  for (let y = 0; y < newH; y++) {
    for (let x = 0; x < newW; x++) {
      const v = (patch[y * newW + x] = Math.fround(patch[y * newW + x] / most));
      total += v;
      sy += y * v;
      sx += x * v;
    }
  }
  const cy = sy / total, cx = sx / total;
  const out = new Float32Array(DIGIT_SIZE * DIGIT_SIZE);
  // A centre on a half pixel (a symmetric stroke) goes up, as in Python (HALF_UP): the last bits
  // of these sums differ from numpy's, which rounds such a centre either way.
  const dy = Math.floor(DIGIT_SIZE / 2 - cy + HALF_UP), dx = Math.floor(DIGIT_SIZE / 2 - cx + HALF_UP);
  for (let y = 0; y < newH; y++) {
    const oy = y + dy;
    if (oy < 0 || oy >= DIGIT_SIZE) continue;  // a lopsided digit is clipped, not refused
    for (let x = 0; x < newW; x++) {
      const ox = x + dx;
      if (ox >= 0 && ox < DIGIT_SIZE) out[oy * DIGIT_SIZE + ox] = patch[y * newW + x];
    }
  }
  return out;
}
