/* The unit explorer page (zfjax.pictures.explorer): a layer overview and a page per unit, from the data files that
 * data/site.js and data/<layer>.js hand to EXPLORER.site() and EXPLORER.layer() (script tags, so the page works
 * from disk). A layer's data and sprite sheets load when the layer is opened. Routes: #<layer> is the overview,
 * #<layer>/<unit> a unit's page. Every element showing a unit carries data-layer and data-unit. */
(function () {
  "use strict";
  const BASE = document.currentScript.src.replace(/[^/]*$/, "");  // the site folder: data paths are relative to it
  const UNIT_SIDE = 96;  // css pixels a unit page's tile is drawn at (small tiles: an integer zoom)
  const OVERVIEW_SIDE = 56;
  const ORDERS = {  // sort keys (smaller first); dead units go last in every order but the unit number's
    unit: null,
    selectivity: (u) => -u.selectivity,
    fires: (u) => u.fires,
    max: (u) => -u.max,
    mean: (u) => -u.mean,
  };
  const state = {site: null, layers: {}, loading: {}, sort: "unit", layer: null, unit: null, ticket: 0};
  const $ = (id) => document.getElementById(id);

  function element(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  const layerHref = (layer) => "#" + encodeURIComponent(layer);
  const unitHref = (layer, unit) => layerHref(layer) + "/" + unit;
  const percent = (f) => (100 * f).toFixed(1) + "%";
  const short = (v) => Math.abs(v) >= 1000 ? v.toFixed(0) : String(Number(v.toPrecision(3)));
  const className = (label) => label >= 0 ? (state.site.classes[label] || "class " + label) : "no label";

  function parseHash() {  // "#<layer>" or "#<layer>/<unit>"; a layer name may itself hold "/"
    const hash = decodeURIComponent(location.hash.slice(1));
    const cut = hash.lastIndexOf("/");
    if (cut >= 0 && /^\d+$/.test(hash.slice(cut + 1))) {
      return {layer: hash.slice(0, cut), unit: Number(hash.slice(cut + 1))};
    }
    return {layer: hash, unit: null};
  }

  function load(name) {  // the layer's data, loaded once by a script tag
    if (state.layers[name]) return Promise.resolve(state.layers[name]);
    if (!state.loading[name]) {
      const info = state.site.layers.find((l) => l.name === name);
      state.loading[name] = new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = BASE + info.data;
        script.onload = () => state.layers[name] ? resolve(state.layers[name])
          : reject(new Error(info.data + " holds no data for layer " + name));
        script.onerror = () => reject(new Error("cannot load " + info.data));
        document.head.appendChild(script);
      });
      state.loading[name].catch(() => { delete state.loading[name]; });
    }
    return state.loading[name];
  }

  function order(data) {  // unit numbers in the chosen order
    const key = ORDERS[state.sort];
    const units = data.units.slice();
    if (key) units.sort((a, b) => (a.dead - b.dead) || (key(a) - key(b)) || (a.unit - b.unit));
    return units.map((u) => u.unit);
  }

  function zoom(tile, side) {
    const longer = Math.max(tile[0], tile[1]);
    return longer >= side ? side / longer : Math.floor(side / longer);
  }

  function tile(data, sheet, row, column, side, attrs) {  // one tile of a sprite sheet, drawn `side` css px wide
    const z = zoom(data.tile, side);
    const [h, w] = data.tile;
    const x = column * (w + data.gap), y = row * (h + data.gap);
    const e = element("div", "tile");
    Object.assign(e.style, {
      width: w * z + "px", height: h * z + "px", backgroundImage: 'url("' + BASE + sheet.file + '")',
      backgroundSize: sheet.width * z + "px " + sheet.height * z + "px",
      backgroundPosition: -x * z + "px " + -y * z + "px",
    });
    Object.assign(e.dataset, {layer: data.name, sheet: sheet.file, x: x, y: y}, attrs);
    return e;
  }

  function show(view, text) {  // one of "overview", "unit", "message"
    $("overview").hidden = view !== "overview";
    $("unit").hidden = view !== "unit";
    $("message").hidden = view !== "message";
    if (view === "message") $("message").textContent = text;
    document.body.dataset.view = view;
  }

  function markTab(layer) {
    for (const tab of document.querySelectorAll(".layer-tab")) {
      tab.classList.toggle("current", tab.dataset.layer === layer);
    }
  }

  function showOverview(data) {
    const section = $("overview");
    section.replaceChildren();
    section.dataset.layer = data.name;
    const dead = data.units.filter((u) => u.dead).length;
    const sort = $("sort").selectedOptions[0].textContent;
    section.append(element("p", "summary", data.name + ": " + data.units.length + " units (" + dead +
      " dead: they never fire on any of the " + state.site.images + " images). Each tile is the unit's " +
      "strongest activation projected to pixels by the deconvnet; order: " + sort + ". Click a unit for its page."));
    const grid = element("div", "grid");
    const columns = data.overview.columns;
    for (const u of order(data)) {
      const unit = data.units[u];
      const cell = element("a", "unit-cell" + (unit.dead ? " dead" : ""));
      cell.href = unitHref(data.name, u);
      Object.assign(cell.dataset, {layer: data.name, unit: u});
      cell.title = "unit " + u + ": strongest activation " + unit.max + ", fires on " + percent(unit.fires) +
        " of the images, selectivity " + unit.selectivity;
      cell.append(tile(data, data.overview, Math.floor(u / columns), u % columns, OVERVIEW_SIDE,
        {unit: u, kind: "overview"}), element("span", "num", String(u)));
      grid.append(cell);
    }
    section.append(grid);
    document.title = data.name + " - " + state.site.title;
    show("overview");
  }

  function figure(content, caption) {
    const f = element("figure");
    f.append(content, element("figcaption", null, caption));
    return f;
  }

  function panel(title, ...content) {
    const p = element("div", "panel");
    p.append(element("h3", null, title), ...content);
    return p;
  }

  function unitHead(data, u, unit) {
    const head = element("div", "unit-head");
    head.append(element("h2", null, data.name + " \u00b7 unit " + u));
    if (unit.dead) head.append(element("span", "badge", "dead: never fires"));
    const sequence = order(data), at = sequence.indexOf(u);
    const link = (text, href, cls) => { const a = element("a", cls, text); a.href = href; return a; };
    if (at > 0) head.append(link("\u2190 unit " + sequence[at - 1], unitHref(data.name, sequence[at - 1]), "prev"));
    if (at < sequence.length - 1) {
      head.append(link("unit " + sequence[at + 1] + " \u2192", unitHref(data.name, sequence[at + 1]), "next"));
    }
    head.append(link("all units of " + data.name, layerHref(data.name), "up"));
    return head;
  }

  function stats(unit) {
    const table = element("table", "stats");
    const rows = [
      ["strongest activation", unit.max], ["mean activation", unit.mean],
      ["fires on", percent(unit.fires) + " of " + state.site.images + " images"],
      ["selectivity", unit.selectivity + " (share of its top class)"],
    ];
    for (const [name, value] of rows) {
      const tr = element("tr");
      tr.append(element("td", null, name), element("td", null, String(value)));
      table.append(tr);
    }
    const counted = unit.classes.reduce((n, c) => n + c[1], 0);
    const most = unit.classes.length ? unit.classes[0][1] : 1;
    const hist = element("div", "hist");
    for (const [label, count] of unit.classes) {
      const row = element("div", "bar-row");
      row.dataset.class = label;
      const bar = element("span", "bar");
      bar.style.width = (100 * count / most) + "%";
      row.append(element("span", "name", className(label)), bar, element("span", "count", String(count)));
      hist.append(row);
    }
    if (!counted) hist.append(element("p", null, "none of its top activations is positive"));
    return panel("Statistics over the dataset", table,
      element("h3", null, "Classes of its " + counted + " strongest positive activations (of the top " +
        state.site.histogram_k + ")"), hist);
  }

  function showUnit(data, u) {
    const unit = data.units[u], section = $("unit"), sheet = data.sheets[unit.sheet];
    const columns = data.columns, k = unit.top.length;
    const at = (column, side, attrs) => tile(data, sheet, unit.row, column, side, Object.assign({unit: u}, attrs));
    section.replaceChildren();
    Object.assign(section.dataset, {layer: data.name, unit: u});
    const projections = element("div", "block projections"), patches = element("div", "block patches");
    unit.top.forEach((t, j) => {
      const caption = className(t.label) + " \u00b7 " + short(t.value) + " \u00b7 image " + t.image;
      projections.append(figure(at(columns.deconvnet + j, UNIT_SIDE, {kind: "deconvnet", rank: j}), caption));
      patches.append(figure(at(columns.patch + j, UNIT_SIDE, {kind: "patch", rank: j}), caption));
    });
    const rules = element("div", "rules");
    const names = {deconvnet: "deconvnet", guided: "guided backprop", saliency: "saliency (gradient)"};
    for (const rule of Object.keys(names)) {
      rules.append(figure(at(columns[rule], UNIT_SIDE, {kind: "rule", rule: rule}), names[rule]));
    }
    const body = element("div", "unit-body");
    body.append(
      panel("Top " + k + ": deconvnet projections", projections),
      panel("The image patches they see", patches),
      panel("Its strongest image (" + className(unit.top[0].label) + ", image " + unit.top[0].image +
        "), three ways back to pixels", rules),
      stats(unit));
    section.append(unitHead(data, u, unit), body);
    document.title = data.name + " unit " + u + " - " + state.site.title;
    show("unit");
  }

  async function route() {
    const ticket = ++state.ticket;
    const names = state.site.layers.map((l) => l.name);
    let {layer, unit} = parseHash();
    if (!layer) layer = names[0];
    if (!names.includes(layer)) {
      return show("message", 'No layer "' + layer + '": this explorer has ' + names.join(", ") + ".");
    }
    markTab(layer);
    if (!state.layers[layer]) show("message", "Loading " + layer + "\u2026");
    let data;
    try {
      data = await load(layer);
    } catch (e) {
      return show("message", e.message);
    }
    if (ticket !== state.ticket) return;  // a later navigation took over
    if (unit !== null && unit >= data.units.length) {
      return show("message", layer + " has units 0 to " + (data.units.length - 1) + "; there is no unit " + unit + ".");
    }
    state.layer = layer;
    state.unit = unit;
    if (unit === null) showOverview(data); else showUnit(data, unit);
  }

  function stepUnit(delta) {
    const sequence = order(state.layers[state.layer]);
    let at = state.unit === null ? (delta > 0 ? 0 : sequence.length - 1) : sequence.indexOf(state.unit) + delta;
    at = Math.max(0, Math.min(sequence.length - 1, at));
    location.hash = unitHref(state.layer, sequence[at]);
  }

  function stepLayer(delta) {
    const layers = state.site.layers;
    const at = Math.max(0, Math.min(layers.length - 1, layers.findIndex((l) => l.name === state.layer) + delta));
    const next = layers[at];
    location.hash = state.unit === null ? layerHref(next.name)
      : unitHref(next.name, Math.min(state.unit, next.units - 1));
  }

  function onKey(e) {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const input = $("unit-number");
    if (e.target === input || e.target.tagName === "SELECT") {
      if (e.key === "Escape") input.blur();
      return;
    }
    if (!state.layer) return;
    if (e.key === "ArrowRight" || e.key === "ArrowLeft") stepUnit(e.key === "ArrowRight" ? 1 : -1);
    else if (e.key === "]" || e.key === "[") stepLayer(e.key === "]" ? 1 : -1);
    else if (e.key === "Escape") location.hash = layerHref(state.layer);
    else if (/^[0-9]$/.test(e.key)) { input.value = e.key; input.focus(); }
    else return;
    e.preventDefault();
  }

  function start() {
    const nav = $("layers");
    for (const layer of state.site.layers) {
      const tab = element("a", "layer-tab", layer.name + " ");
      tab.href = layerHref(layer.name);
      tab.dataset.layer = layer.name;
      tab.append(element("small", null, String(layer.units)));
      nav.append(tab);
    }
    $("sort").addEventListener("change", () => { state.sort = $("sort").value; route(); });
    $("goto").addEventListener("submit", (e) => {
      e.preventDefault();
      const input = $("unit-number");
      if (state.layer && /^\d+$/.test(input.value)) location.hash = unitHref(state.layer, Number(input.value));
      input.blur();
    });
    document.addEventListener("keydown", onKey);
    window.addEventListener("hashchange", route);
    route();
  }

  window.EXPLORER = {
    site(data) { state.site = data; start(); },
    layer(data) { state.layers[data.name] = data; },
  };
})();
