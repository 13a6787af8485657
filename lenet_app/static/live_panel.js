// The Train page's run panel: a progress line and bar over three Plotly charts.
//
// While a run trains, the panel fetches the run's live JSON from the server (lenet_app/server.py
// serves it from the run folder): every quarter second while a running run has no loss point on
// the chart yet (just after Start), else every `every_ms` (2 s: each read and redraw is browser CPU
// that a training on the same machine loses), and redraws only the charts that changed,
// in place; no Streamlit script runs meanwhile, so the browser re-renders nothing else. When the
// JSON says the run has ended, the panel asks Streamlit for one rerun, which draws the final page.

function plotly(src) {
  if (!window.__lenetPlotly) {
    window.__lenetPlotly = new Promise((resolve, reject) => {
      if (window.Plotly) return resolve(window.Plotly);
      const script = document.createElement("script");
      script.src = src;
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => { window.__lenetPlotly = null; reject(new Error(src)); };
      document.head.appendChild(script);
    });
  }
  return window.__lenetPlotly;
}

const drawnShapes = new WeakMap();  // chart node -> its figure as last drawn, less the points

// Whether Plotly.animate can move the points without redrawing the rest: line traces only, axes
// with fixed ranges (animate does not autorange again), every trace already drawn with points.
function onlyPointsMove(node, figure) {
  const axes = Object.keys(figure.layout).filter((k) => /^[xy]axis\d*$/.test(k));
  return figure.data.every((t) => !t.type || t.type === "scatter")
    && axes.length > 0 && axes.every((k) => Array.isArray(figure.layout[k].range))
    && Array.isArray(node.data) && node.data.every((t) => t.x && t.x.length > 0);
}

// Where only the points changed, Plotly.animate (no redraw) moves the lines and leaves axes,
// legend and title alone; Plotly.react lays out and redraws the whole chart, several times the
// browser's work at each update of a growing curve.
async function draw(Plotly, node, figure, config) {
  const shape = JSON.stringify({ layout: figure.layout, traces: figure.data.map(({ x, y, ...rest }) => rest) });
  if (drawnShapes.get(node) === shape && onlyPointsMove(node, figure)) {
    try {
      await Plotly.animate(node, { data: figure.data, traces: figure.data.map((_, i) => i) },
                           { transition: { duration: 0 }, frame: { duration: 0, redraw: false }, mode: "immediate" });
      return;
    } catch (err) {
      // e.g. an animation interrupted by another draw: redraw the whole chart below
    }
  }
  drawnShapes.delete(node);
  await Plotly.react(node, figure.data, figure.layout, config);
  drawnShapes.set(node, shape);
}

const panels = new WeakMap();

// Draw the newest payload; one draw at a time, skipping payloads that a newer one replaced.
async function drain(panel) {
  if (panel.drawing) return;
  panel.drawing = true;
  try {
    while (panel.latest) {
      const payload = panel.latest;
      panel.latest = null;
      const progress = panel.root.querySelector(".lenet-progress");
      const text = progress.querySelector(".lenet-progress-text");
      if (text.textContent !== payload.text) text.textContent = payload.text;
      const track = progress.querySelector(".lenet-progress-track");
      track.style.display = payload.progress === null ? "none" : "";
      if (payload.progress !== null) {
        progress.querySelector(".lenet-progress-fill").style.width = (100 * payload.progress).toFixed(2) + "%";
      }
      const Plotly = await plotly(panel.data.src);
      for (const [name, figure] of Object.entries(payload.figures)) {
        if (panel.drawn[name] === payload.versions[name]) continue;  // e.g. the epoch charts mid-epoch
        panel.drawn[name] = payload.versions[name];
        await draw(Plotly, panel.root.querySelector('[data-chart="' + name + '"]'), figure, panel.data.config);
      }
      const loss = payload.figures["loss-per-step"];
      panel.soon = payload.status === "running" && !(loss && loss.data.some((t) => t.x && t.x.length));
      if (payload.ended) finish(panel);
      else if (payload.status !== panel.data.status && panel.asked !== payload.status) {
        panel.asked = payload.status;  // e.g. queued -> running: the page's title and buttons change
        panel.setTriggerValue("status", payload.status);
      }
    }
  } catch (err) {
    panel.root.querySelector(".lenet-progress-text").textContent =
      "The live panel could not draw (" + err.message + "). Reload the page.";
  } finally {
    panel.drawing = false;
  }
}

// The run has ended (or its feed is gone): stop reading and ask Streamlit for one rerun. A panel
// drawn with no feed (a run that had ended already, or none yet) asks for nothing.
function finish(panel) {
  if (panel.ended) return;
  panel.ended = true;
  clearTimeout(panel.timer);
  panel.timer = null;
  if (panel.data.feed) panel.setTriggerValue("ended", true);
}

const FIRST_MS = 250;

// The next read: soon while a run that has started shows no point yet (Start should show one at
// once), else at the panel's pace; a queued run waits at that pace too, however long its queue.
function schedule(panel) {
  if (panel.ended || !panel.data.feed) return;
  panel.timer = setTimeout(() => poll(panel).finally(() => schedule(panel)),
                           panel.soon ? FIRST_MS : panel.data.every_ms);
}

async function poll(panel) {
  if (panel.fetching || panel.ended || document.hidden) return;  // a hidden tab draws nothing
  panel.fetching = true;
  try {
    const response = await fetch(panel.data.feed, { cache: "no-store", credentials: "same-origin" });
    if (response.status === 404) return finish(panel);  // no such run for this browser any more
    if (!response.ok) throw new Error("HTTP " + response.status);
    panel.latest = await response.json();
    panel.lastRead = Date.now();
    await drain(panel);
  } catch (err) {
    // Ten seconds without a good read (e.g. the server is restarting): let the page redraw.
    if (Date.now() - panel.lastRead >= 10000) finish(panel);
  } finally {
    panel.fetching = false;
  }
}

// Charts follow their container's width: a window resized (a projector plugged in) or the epoch
// charts moving under each other re-lays them out, titles and legends included.
function followSize(panel) {
  if (panel.observer || !window.ResizeObserver) return;
  const widths = new WeakMap();
  panel.observer = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const node = entry.target;
      const width = Math.round(entry.contentRect.width);
      if (widths.get(node) === width || !node.data || !window.Plotly) continue;
      widths.set(node, width);
      window.Plotly.Plots.resize(node);
    }
  });
  panel.root.querySelectorAll(".lenet-chart").forEach((node) => panel.observer.observe(node));
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let panel = panels.get(parentElement);
  if (!panel || panel.data.feed !== data.feed) {
    if (panel) clearTimeout(panel.timer);
    panel = { root: parentElement.querySelector(".lenet-live-panel"), drawn: panel ? panel.drawn : {},
              soon: true,  // until the first read says otherwise
              latest: null, drawing: false, fetching: false, lastRead: Date.now(), ended: false, timer: null,
              observer: panel ? panel.observer : null };
    panels.set(parentElement, panel);
  }
  if (data.feed && panel.ended) {  // the rerun it asked for found the run still live: read again
    panel.ended = false;
    panel.lastRead = Date.now();
  }
  panel.data = data;
  panel.setTriggerValue = setTriggerValue;
  panel.latest = JSON.parse(data.payload);  // the state when the page was drawn, until the first read
  drain(panel).then(() => followSize(panel));
  if (data.feed && !panel.timer && !panel.ended) schedule(panel);
  return () => {
    clearTimeout(panel.timer);
    if (panel.observer) panel.observer.disconnect();
    panel.timer = null;
    panel.ended = true;
    panels.delete(parentElement);
  };
}
