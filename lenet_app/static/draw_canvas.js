// The Draw page's canvas (lenet_app/draw_canvas.py), with the model running in the browser.
//
// Every pointer move (mouse, touch or pen) draws on the 280x280 canvas, makes the 28x28 image as
// Python would (draw_preprocess.js, loaded before this file) and runs the picked model, exported
// to ONNX by the server, in onnxruntime-web: the prediction, the probability bars and the conv1 and
// conv2 maps follow the pen with no message to the server. Only when a stroke ends does the 28x28
// image go to Python (setStateValue: one script rerun), for what needs the server: attribution
// and the probe inputs. A browser that cannot run the model (no WebAssembly, a runtime or model
// error) says so in one line and sends the canvas itself on each pen-up, as the page did before;
// the server then draws the prediction too.

const pads = new WeakMap();  // component root -> its state, kept across reruns

function loadScript(src) {
  if (!window.__lenetOrt) {
    window.__lenetOrt = new Promise((resolve, reject) => {
      if (window.ort) return resolve(window.ort);
      const script = document.createElement("script");
      script.src = src;
      script.onload = () => (window.ort ? resolve(window.ort) : reject(new Error("no ort in " + src)));
      script.onerror = () => { window.__lenetOrt = null; reject(new Error("could not load " + src)); };
      document.head.appendChild(script);
    });
  }
  return window.__lenetOrt;
}

// One runtime session per model URL (a URL names the checkpoint's version), shared by reruns.
const sessions = new Map();

async function session(data) {
  if (!sessions.has(data.model_url)) {
    sessions.set(data.model_url, (async () => {
      if (typeof WebAssembly !== "object") throw new Error("this browser has no WebAssembly");
      const ort = await loadScript(data.ort_url + "ort.wasm.min.js");
      ort.env.wasm.wasmPaths = data.ort_url;
      ort.env.wasm.numThreads = 1;  // no cross-origin isolation here, and one thread is plenty
      const response = await fetch(data.model_url, { credentials: "same-origin" });
      if (!response.ok) throw new Error((await response.text()) || "the model's file gave HTTP " + response.status);
      const bytes = new Uint8Array(await response.arrayBuffer());
      return ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
    })());
    sessions.get(data.model_url).catch(() => sessions.delete(data.model_url));  // a later page may retry
  }
  return sessions.get(data.model_url);
}

// -- colours -------------------------------------------------------------------------------

// A 256-entry lookup table from a Plotly colour scale given as [[position, r, g, b], ...].
function lut(scale) {
  const table = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = i / 255;
    let k = 0;
    while (k < scale.length - 2 && scale[k + 1][0] < t) k++;
    const [p0, ...c0] = scale[k], [p1, ...c1] = scale[k + 1];
    const f = p1 > p0 ? Math.min(1, Math.max(0, (t - p0) / (p1 - p0))) : 0;
    for (let j = 0; j < 3; j++) table[3 * i + j] = c0[j] + f * (c1[j] - c0[j]);
  }
  return table;
}

// -- painting ------------------------------------------------------------------------------

function paintDigit(pad, image) {
  const ctx = pad.digit.getContext("2d");
  const pixels = ctx.createImageData(28, 28);
  for (let i = 0; i < 784; i++) {
    const v = Math.round(255 * Math.min(1, Math.max(0, image[i])));
    pixels.data.set([v, v, v, 255], 4 * i);
  }
  ctx.putImageData(pixels, 0, 0);
}

function buildBars(pad, classes) {
  pad.bars.replaceChildren();
  pad.barRows = classes.map((name) => {
    const row = document.createElement("div");
    row.className = "ld-bar";
    row.innerHTML = '<span class="ld-bar-name"></span><span class="ld-bar-track"><span class="ld-bar-fill"></span>'
      + '</span><span class="ld-bar-value"></span>';
    row.querySelector(".ld-bar-name").textContent = name;
    pad.bars.appendChild(row);
    return { row, fill: row.querySelector(".ld-bar-fill"), value: row.querySelector(".ld-bar-value") };
  });
}

function paintProbs(pad, probs) {
  const classes = pad.data.classes;
  let best = 0;
  for (let i = 1; i < probs.length; i++) if (probs[i] > probs[best]) best = i;
  const name = classes[best];
  pad.prediction.textContent = name;
  pad.prediction.style.fontSize = name.length <= 2 ? "4.5rem" : "2.2rem";
  pad.sure.textContent = Math.round(100 * probs[best]) + "% sure";
  pad.barRows.forEach((bar, i) => {
    bar.fill.style.width = (100 * probs[i]).toFixed(2) + "%";
    bar.row.classList.toggle("ld-best", i === best);
    bar.value.textContent = Math.round(100 * probs[i]) + "%";
  });
  pad.root.dataset.prediction = name;
}

// One layer's maps (C, H, W), one colour scale for the layer as the server's grids have:
// sequential from 0 for non-negative maps, diverging around 0 where some are negative (tanh).
function paintMaps(pad, layer, tensor) {
  const [, c, h, w] = tensor.dims;
  const values = tensor.data;
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    if (values[i] < lo) lo = values[i];
    if (values[i] > hi) hi = values[i];
  }
  const diverging = lo < 0;
  const m = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
  const [from, to] = diverging ? [-m, m] : [Math.min(0, lo), hi > 0 ? hi : 1];
  const table = diverging ? pad.diverging : pad.sequential;
  const box = pad.layers[layer - 1];
  if (box.count !== c || box.size !== h) {
    box.count = c;
    box.size = h;
    box.title.textContent = `conv${layer}: ${c} maps, ${h}x${w}`;
    box.grid.replaceChildren();
    box.grid.style.setProperty("--cols", layer === 1 ? Math.ceil(c / Math.ceil(c / 4)) : Math.ceil(c / Math.ceil(c / 8)));
    box.cells = [];
    for (let k = 0; k < c; k++) {
      const cell = document.createElement("canvas");
      cell.width = w;
      cell.height = h;
      cell.className = "ld-map";
      box.grid.appendChild(cell);
      box.cells.push(cell);
    }
  }
  box.node.hidden = false;
  for (let k = 0; k < c; k++) {
    const ctx = box.cells[k].getContext("2d");
    const pixels = ctx.createImageData(w, h);
    for (let i = 0; i < h * w; i++) {
      const t = Math.round(255 * Math.min(1, Math.max(0, (values[k * h * w + i] - from) / (to - from))));
      pixels.data.set([table[3 * t], table[3 * t + 1], table[3 * t + 2], 255], 4 * i);
    }
    ctx.putImageData(pixels, 0, 0);
  }
}

function showEmpty(pad) {
  pad.root.classList.add("ld-empty");
  pad.root.dataset.prediction = "";
  pad.layers.forEach((box) => { box.node.hidden = true; });
}

// -- the model, on every move ----------------------------------------------------------------

function currentImage(pad) {
  const pixels = pad.ctx.getImageData(0, 0, 280, 280).data;
  return digitFromRGBA(pixels, 280, 280);
}

// Predict from what the canvas holds now; while one prediction runs, moves only mark that another
// is due, so a slow machine skips to the newest drawing rather than queueing old ones.
async function predict(pad, moveTime) {
  pad.due = moveTime === undefined ? performance.now() : moveTime;
  if (pad.busy) return;
  pad.busy = true;
  try {
    while (pad.due !== null) {
      const since = pad.due;
      pad.due = null;
      const image = currentImage(pad);
      pad.image = image;
      if (!image) { showEmpty(pad); continue; }
      if (!pad.session) continue;
      const feeds = { image: new pad.ort.Tensor("float32", image, [1, 1, 28, 28]) };
      const cleared = pad.clears;
      const out = await pad.session.run(feeds);
      if (pad.clears !== cleared) continue;  // Clear was pressed meanwhile: this answer is of nothing
      pad.root.classList.remove("ld-empty");
      paintDigit(pad, image);
      paintProbs(pad, out.probs.data);
      paintMaps(pad, 1, out.conv1);
      if (out.conv2) paintMaps(pad, 2, out.conv2);
      else pad.layers[1].node.hidden = true;
      pad.probs = Array.from(out.probs.data);
      pad.updates += 1;
      pad.root.dataset.updates = String(pad.updates);
      const stroke = pad.strokes;
      // The time from the pen's move to the frame that shows its prediction, for the benchmarks.
      const drawing = pad.drawing;
      requestAnimationFrame(() => setTimeout(() => {
        const now = performance.now();
        if (pad.firstAt === null) pad.firstAt = now;  // since the page opened (performance's origin)
        pad.latencies.push({ ms: now - since, stroke, drawing });
        if (pad.latencies.length > 5000) pad.latencies.shift();
      }, 0));
    }
  } catch (err) {
    fallBack(pad, err);
  } finally {
    pad.busy = false;
  }
}

function fallBack(pad, err) {
  pad.session = null;
  pad.live = "off";
  pad.root.dataset.live = "off";
  pad.note.hidden = false;
  // One short line on the page; the runtime's own words (often long) on hover and in the console.
  pad.note.textContent = "Live prediction is off in this browser: the server answers when you lift the pen.";
  pad.note.title = String(err && err.message || err);
  console.warn("LeNet Lab: live prediction off:", err);
  showEmpty(pad);
}

function encodeImage(image) {
  const bytes = new Uint8Array(image.buffer, image.byteOffset, image.byteLength);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

// A finished stroke goes to the server: the 28x28 image the browser made (and has shown the
// model's answer for), or, without a live model, the canvas as a PNG for Python to make it.
function send(pad) {
  pad.strokes += 1;
  pad.root.dataset.strokes = String(pad.strokes);
  const image = currentImage(pad);
  if (!image) return;
  const live = pad.live === "ready";
  // Numbered from a random start: a canvas made anew (the page opened again) must not repeat the
  // number of the drawing the server saw last, or the server would take it for that one.
  const n = pad.firstNumber + pad.strokes;
  pad.setStateValue("drawing", live
    ? { n, live: true, image: encodeImage(image) }
    : { n, live: false, png: pad.canvas.toDataURL("image/png") });
}

// -- the pen ---------------------------------------------------------------------------------

function position(pad, event) {
  const rect = pad.canvas.getBoundingClientRect();
  return [(event.clientX - rect.left) * (280 / rect.width), (event.clientY - rect.top) * (280 / rect.height)];
}

function line(pad, from, to) {
  const ctx = pad.ctx;
  ctx.beginPath();
  ctx.moveTo(from[0], from[1]);
  ctx.lineTo(to[0], to[1]);
  ctx.stroke();
}

function listen(pad) {
  const canvas = pad.canvas;
  canvas.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || pad.pointer !== null) return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    pad.pointer = event.pointerId;
    pad.drawing = true;
    pad.last = position(pad, event);
    line(pad, pad.last, pad.last);  // a dot for a tap
    predict(pad, event.timeStamp);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (event.pointerId !== pad.pointer) return;
    event.preventDefault();
    // A fast pen gives several points per event: draw them all, predict once.
    const points = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const e of points.length ? points : [event]) {
      const next = position(pad, e);
      line(pad, pad.last, next);
      pad.last = next;
    }
    predict(pad, event.timeStamp);
  });
  const end = (event) => {
    if (event.pointerId !== pad.pointer) return;
    pad.pointer = null;
    pad.drawing = false;
    send(pad);
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  pad.clear.addEventListener("click", () => {
    pad.clears += 1;
    clearCanvas(pad);
    pad.image = null;
    showEmpty(pad);
    pad.setStateValue("drawing", null);
  });
}

function clearCanvas(pad) {
  pad.ctx.fillStyle = "#000";
  pad.ctx.fillRect(0, 0, 280, 280);
}

function create(root, data) {
  const canvas = root.querySelector(".ld-canvas");
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.lineWidth = 18;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.strokeStyle = "#fff";
  const pad = {
    root, canvas, ctx, data,
    digit: root.querySelector(".ld-digit"), prediction: root.querySelector(".ld-prediction"),
    sure: root.querySelector(".ld-sure"), bars: root.querySelector(".ld-bars"), note: root.querySelector(".ld-note"),
    clear: root.querySelector(".ld-clear"),
    layers: [1, 2].map((layer) => {
      const node = root.querySelector(`.ld-layer[data-layer="${layer}"]`);
      return { node, title: node.querySelector(".ld-layer-title"), grid: node.querySelector(".ld-grid"), count: 0 };
    }),
    sequential: lut(data.colors.sequential), diverging: lut(data.colors.diverging),
    pointer: null, drawing: false, last: null, busy: false, due: null, session: null, ort: null, live: "loading",
    clears: 0, firstNumber: Math.floor(Math.random() * 1e9), modelUrl: undefined, readyAt: null, firstAt: null, image: null, probs: null, updates: 0, strokes: 0, latencies: [],
  };
  clearCanvas(pad);
  root.__lenet = pad;  // for the tests and benchmarks: the image, probabilities and timings
  listen(pad);
  return pad;
}

function useModel(pad) {
  const data = pad.data;
  pad.modelUrl = data.model_url;
  pad.session = null;
  if (!data.model_url) {
    fallBack(pad, new Error(data.why_not || "no model to run here"));
    return;
  }
  pad.live = "loading";
  pad.root.dataset.live = "loading";
  pad.note.hidden = true;
  const url = data.model_url;
  session(data).then((s) => {
    if (pad.modelUrl !== url) return;  // another model was picked meanwhile
    pad.session = s;
    pad.ort = window.ort;
    pad.live = "ready";
    pad.root.dataset.live = "ready";
    if (pad.readyAt === null) pad.readyAt = performance.now();
    if (currentImage(pad)) predict(pad);  // a drawing made while the model loaded, or another model
  }).catch((err) => {
    if (pad.modelUrl === url) fallBack(pad, err);
  });
}

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  const root = parentElement.querySelector(".ld");
  let pad = pads.get(root);
  if (!pad) {
    pad = create(root, data);
    pads.set(root, pad);
  }
  pad.setStateValue = setStateValue;
  const classesChanged = !pad.data.classes || pad.data.classes.join() !== data.classes.join() || !pad.barRows;
  pad.data = data;
  pad.root.querySelector(".ld-hint").textContent = data.hint;
  if (classesChanged) buildBars(pad, data.classes);
  if (data.model_url !== pad.modelUrl) useModel(pad);
  if (!pad.image) showEmpty(pad);
}
