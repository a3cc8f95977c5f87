/* The gallery map: every image a point (its 2-D layout), drawn on a canvas.
   Points are written straight into the canvas's pixel buffer (one typed-array
   write per pixel, no path per point), so a frame of 100k points costs a few
   milliseconds; thumbnails are drawn over the points once few enough are in
   view, loaded only for those. Pan: drag; zoom: wheel, pinch or the buttons;
   hover names the image; click opens its "find similar"; Shift-drag or the
   lasso tool selects, and the selection becomes a search with several images. */
(function () {
  "use strict";
  var root = document.getElementById("map");
  if (!root) return;
  var canvas = document.getElementById("map-canvas");
  var ctx = canvas.getContext("2d");
  var tip = document.getElementById("map-tip");
  var loading = document.getElementById("map-loading");
  var MAX_QUERY = parseInt(root.dataset.maxQuery, 10) || 100;
  var THUMBS_BELOW = 250; // points in view under which thumbnails are drawn
  var THUMB_CACHE = 800; // thumbnails kept loaded (oldest dropped first)
  var HIT_PX = 8; // how near the cursor a point must be to count as under it
  var GRID = 256; // cells per side of the hover/click lookup grid

  var n = 0, ids = null, xs = null, ys = null; // world coordinates in [0, 1]
  var state = null; // Uint8Array: 0 none, 1 selected, 2 negative
  var gridStart = null, gridItems = null;
  var view = { scale: 1, tx: 0, ty: 0 };
  var dpr = 1, width = 0, height = 0, image = null, pixels = null;
  var colours = {};
  var names = new Map(), thumbs = new Map();
  var tool = "pan", dirty = true, hovered = -1, lastDraw = 0;
  var stats = { frames: 0, drawMs: [] };

  function cssColour(name, fallback) {
    var v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }
  function packed(colour) {
    // Any CSS colour -> 0xAABBGGRR (the canvas's byte order on little-endian machines).
    var probe = document.createElement("canvas").getContext("2d");
    probe.fillStyle = colour; probe.fillRect(0, 0, 1, 1);
    var d = probe.getImageData(0, 0, 1, 1).data;
    return ((255 << 24) | (d[2] << 16) | (d[1] << 8) | d[0]) >>> 0;
  }
  function readColours() {
    colours.bg = packed(cssColour("--sunken", "#eceef3"));
    colours.point = packed(cssColour("--accent", "#3451d1"));
    colours.selected = packed(cssColour("--warn-dot", "#f59f00"));
    colours.negative = packed(cssColour("--bad", "#b42318"));
    colours.hover = cssColour("--ink", "#151a23");
  }

  function resize() {
    var box = root.getBoundingClientRect();
    dpr = window.devicePixelRatio || 1;
    width = Math.max(1, Math.round(box.width * dpr));
    height = Math.max(1, Math.round(box.height * dpr));
    canvas.width = width; canvas.height = height;
    image = ctx.createImageData(width, height);
    pixels = new Uint32Array(image.data.buffer);
    dirty = true;
  }

  function fit() {
    var pad = (n <= THUMBS_BELOW ? 60 : 24) * dpr, side = Math.min(width, height) - 2 * pad; // room for thumbnails at the edges
    view.scale = Math.max(side, 1);
    view.tx = (width - view.scale) / 2; view.ty = (height - view.scale) / 2;
    dirty = true;
  }

  function buildGrid() {
    // Counting sort of the points into GRID x GRID cells: the lookup under the cursor reads a few cells.
    var counts = new Uint32Array(GRID * GRID + 1), cell = new Uint32Array(n), i;
    for (i = 0; i < n; i++) {
      var cx = Math.min(GRID - 1, Math.max(0, (xs[i] * GRID) | 0));
      var cy = Math.min(GRID - 1, Math.max(0, (ys[i] * GRID) | 0));
      cell[i] = cy * GRID + cx; counts[cell[i] + 1]++;
    }
    for (i = 1; i <= GRID * GRID; i++) counts[i] += counts[i - 1];
    gridStart = counts.slice();
    gridItems = new Uint32Array(n);
    var fill = counts.slice();
    for (i = 0; i < n; i++) gridItems[fill[cell[i]]++] = i;
  }

  function nearest(sx, sy) {
    // The point nearest the canvas pixel (sx, sy) within HIT_PX, or -1.
    if (!n) return -1;
    var wx = (sx - view.tx) / view.scale, wy = (sy - view.ty) / view.scale;
    var r = (HIT_PX * dpr) / view.scale, best = -1, bestD = Infinity;
    var x0 = Math.max(0, ((wx - r) * GRID) | 0), x1 = Math.min(GRID - 1, ((wx + r) * GRID) | 0);
    var y0 = Math.max(0, ((wy - r) * GRID) | 0), y1 = Math.min(GRID - 1, ((wy + r) * GRID) | 0);
    for (var cy = y0; cy <= y1; cy++) {
      for (var cx = x0; cx <= x1; cx++) {
        var c = cy * GRID + cx;
        for (var k = gridStart[c]; k < gridStart[c + 1]; k++) {
          var i = gridItems[k], dx = xs[i] - wx, dy = ys[i] - wy, d = dx * dx + dy * dy;
          if (d <= r * r && d < bestD) { bestD = d; best = i; }
        }
      }
    }
    return best;
  }

  function thumbFor(i) {
    var id = ids[i], img = thumbs.get(id);
    if (img) { thumbs.delete(id); thumbs.set(id, img); return img; } // most recently used last
    img = new Image();
    img.decoding = "async";
    img.onload = function () {
      // Drawn from a copy at most as large as it is ever drawn: scaling a 240 px thumbnail down on
      // every frame is most of a zoomed-in frame's cost in a software-rendered canvas.
      if (window.createImageBitmap) {
        var side = 96 * dpr, r = img.naturalWidth / img.naturalHeight;
        createImageBitmap(img, { resizeWidth: Math.round(r >= 1 ? side : side * r), resizeHeight: Math.round(r >= 1 ? side / r : side), resizeQuality: "medium" })
          .then(function (bitmap) { img.bitmap = bitmap; dirty = true; })
          .catch(function () { dirty = true; });
      }
      dirty = true;
    };
    img.src = root.dataset.thumbUrl.replace("/0/", "/" + id + "/");
    thumbs.set(id, img);
    while (thumbs.size > THUMB_CACHE) {
      var oldest = thumbs.keys().next().value, gone = thumbs.get(oldest);
      if (gone.bitmap) gone.bitmap.close();
      thumbs.delete(oldest);
    }
    return img;
  }

  function draw() {
    var started = performance.now();
    pixels.fill(colours.bg);
    var s = view.scale, tx = view.tx, ty = view.ty, w = width, h = height;
    var size = s > 4000 ? 3 : 2; // a point is a size x size square of pixels
    if (dpr > 1) size += 1;
    var visible = [], inView = 0, cap = THUMBS_BELOW + 1;
    for (var i = 0; i < n; i++) {
      var px = (xs[i] * s + tx) | 0, py = (ys[i] * s + ty) | 0;
      if (px < 0 || py < 0 || px >= w - size || py >= h - size) continue;
      inView++;
      if (visible.length < cap) visible.push(i);
      var st = state[i], colour = st === 0 ? colours.point : st === 1 ? colours.selected : colours.negative;
      var at = py * w + px;
      for (var dy = 0; dy < size; dy++, at += w) {
        for (var dx = 0; dx < size; dx++) pixels[at + dx] = colour;
      }
    }
    ctx.putImageData(image, 0, 0);
    if (inView <= THUMBS_BELOW && inView > 0) {
      // Few enough in view: each as its thumbnail, sized to the spacing the zoom gives them.
      var side = Math.max(24 * dpr, Math.min(96 * dpr, s / Math.sqrt(Math.max(n, 1)) * 0.9));
      for (var v = 0; v < visible.length; v++) {
        var j = visible[v], img = thumbFor(j);
        var cx = xs[j] * s + tx, cy = ys[j] * s + ty;
        if (img.complete && img.naturalWidth) {
          var ratio = img.naturalWidth / img.naturalHeight, tw = ratio >= 1 ? side : side * ratio, th = ratio >= 1 ? side / ratio : side;
          ctx.drawImage(img.bitmap || img, cx - tw / 2, cy - th / 2, tw, th);
          if (state[j]) {
            ctx.lineWidth = 3 * dpr;
            ctx.strokeStyle = state[j] === 1 ? cssColour("--warn-dot", "#f59f00") : cssColour("--bad", "#b42318");
            ctx.strokeRect(cx - tw / 2, cy - th / 2, tw, th);
          }
        }
      }
    }
    if (hovered >= 0) {
      ctx.beginPath();
      ctx.lineWidth = 2 * dpr;
      ctx.strokeStyle = colours.hover;
      ctx.arc(xs[hovered] * s + tx + size / 2, ys[hovered] * s + ty + size / 2, 6 * dpr, 0, 2 * Math.PI);
      ctx.stroke();
    }
    if (lasso && lasso.length > 1) {
      ctx.beginPath();
      ctx.moveTo(lasso[0][0], lasso[0][1]);
      for (var p = 1; p < lasso.length; p++) ctx.lineTo(lasso[p][0], lasso[p][1]);
      ctx.closePath();
      ctx.lineWidth = 2 * dpr;
      ctx.setLineDash([6 * dpr, 4 * dpr]);
      ctx.strokeStyle = colours.hover;
      ctx.stroke();
      ctx.setLineDash([]);
    }
    root.dataset.inView = String(inView);
    root.dataset.thumbs = inView <= THUMBS_BELOW && inView > 0 ? "1" : "0";
    lastDraw = performance.now() - started;
    stats.frames++;
    stats.drawMs.push(lastDraw);
    if (stats.drawMs.length > 600) stats.drawMs.shift();
  }

  function frame() {
    if (dirty && pixels) { dirty = false; draw(); }
    requestAnimationFrame(frame);
  }

  // --- Input ------------------------------------------------------------
  var pointers = new Map(), drag = null, lasso = null, pinch = null;

  function local(e) {
    var box = canvas.getBoundingClientRect();
    return [(e.clientX - box.left) * dpr, (e.clientY - box.top) * dpr];
  }
  function zoomAt(factor, sx, sy) {
    var next = Math.min(Math.max(view.scale * factor, 50 * dpr), 2e6 * dpr);
    factor = next / view.scale;
    view.tx = sx - (sx - view.tx) * factor; view.ty = sy - (sy - view.ty) * factor;
    view.scale = next;
    dirty = true;
  }

  canvas.addEventListener("wheel", function (e) {
    e.preventDefault();
    var p = local(e), delta = e.deltaMode === 1 ? e.deltaY * 16 : e.deltaY;
    zoomAt(Math.exp(-delta * 0.0015), p[0], p[1]);
  }, { passive: false });

  canvas.addEventListener("pointerdown", function (e) {
    canvas.setPointerCapture(e.pointerId);
    var p = local(e);
    pointers.set(e.pointerId, p);
    if (pointers.size === 2) {
      var two = Array.from(pointers.values());
      pinch = { d: Math.hypot(two[0][0] - two[1][0], two[0][1] - two[1][1]), scale: view.scale };
      drag = null; lasso = null;
      return;
    }
    if (tool === "lasso" || e.shiftKey) { lasso = [p]; drag = null; }
    else drag = { x: p[0], y: p[1], tx: view.tx, ty: view.ty, moved: false };
  });
  canvas.addEventListener("pointermove", function (e) {
    var p = local(e);
    if (pointers.has(e.pointerId)) pointers.set(e.pointerId, p);
    if (pinch && pointers.size === 2) {
      var two = Array.from(pointers.values());
      var d = Math.hypot(two[0][0] - two[1][0], two[0][1] - two[1][1]);
      zoomAt((pinch.scale * d) / pinch.d / view.scale, (two[0][0] + two[1][0]) / 2, (two[0][1] + two[1][1]) / 2);
      return;
    }
    if (lasso) { lasso.push(p); dirty = true; return; }
    if (drag) {
      var dx = p[0] - drag.x, dy = p[1] - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 4 * dpr) drag.moved = true;
      if (drag.moved) { view.tx = drag.tx + dx; view.ty = drag.ty + dy; dirty = true; }
      return;
    }
    hover(p, e);
  });
  function end(e) {
    var p = local(e);
    pointers.delete(e.pointerId);
    if (pinch) { if (pointers.size < 2) pinch = null; return; }
    if (lasso) { finishLasso(); return; }
    if (drag && !drag.moved) {
      var i = nearest(p[0], p[1]);
      if (i >= 0) window.location.href = root.dataset.similarUrl.replace("/0/", "/" + ids[i] + "/");
    }
    drag = null;
  }
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", function (e) { pointers.delete(e.pointerId); drag = null; lasso = null; pinch = null; dirty = true; });
  canvas.addEventListener("pointerleave", function () { if (!drag && !lasso) { hovered = -1; tip.hidden = true; dirty = true; } });

  var nameTimer = null;
  function hover(p, e) {
    var i = nearest(p[0], p[1]);
    if (i !== hovered) { hovered = i; dirty = true; }
    canvas.style.cursor = i >= 0 ? "pointer" : tool === "lasso" ? "crosshair" : "grab";
    if (i < 0) { tip.hidden = true; return; }
    var box = root.getBoundingClientRect();
    tip.style.left = (e.clientX - box.left + 14) + "px";
    tip.style.top = (e.clientY - box.top + 14) + "px";
    var id = ids[i];
    if (names.has(id)) { tip.textContent = names.get(id); tip.hidden = false; return; }
    tip.textContent = "#" + id; tip.hidden = false;
    clearTimeout(nameTimer);
    nameTimer = setTimeout(function () { fetchNames([id]).then(function () { if (hovered >= 0 && ids[hovered] === id) { tip.textContent = names.get(id) || "#" + id; } }); }, 60);
  }
  function fetchNames(list) {
    var want = list.filter(function (id) { return !names.has(id); }).slice(0, 500);
    if (!want.length) return Promise.resolve();
    return fetch(root.dataset.namesUrl + "?ids=" + want.join(","), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : { names: {} }; })
      .then(function (body) { Object.keys(body.names || {}).forEach(function (k) { names.set(Number(k), body.names[k]); }); })
      .catch(function () {});
  }

  function finishLasso() {
    var poly = lasso; lasso = null; dirty = true;
    if (!poly || poly.length < 3) return;
    // Screen polygon -> world polygon, then a bounding-box cut and an even-odd ray test per point.
    var wp = poly.map(function (q) { return [(q[0] - view.tx) / view.scale, (q[1] - view.ty) / view.scale]; });
    var minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
    wp.forEach(function (q) { minX = Math.min(minX, q[0]); maxX = Math.max(maxX, q[0]); minY = Math.min(minY, q[1]); maxY = Math.max(maxY, q[1]); });
    var added = 0;
    for (var i = 0; i < n; i++) {
      var x = xs[i], y = ys[i];
      if (x < minX || x > maxX || y < minY || y > maxY || state[i] === 2) continue;
      var inside = false;
      for (var a = 0, b = wp.length - 1; a < wp.length; b = a++) {
        if ((wp[a][1] > y) !== (wp[b][1] > y) && x < ((wp[b][0] - wp[a][0]) * (y - wp[a][1])) / (wp[b][1] - wp[a][1]) + wp[a][0]) inside = !inside;
      }
      if (inside && state[i] !== 1) { state[i] = 1; added++; }
    }
    updateSelection();
  }

  // --- Selection and the search with several images ----------------------
  var countEl = document.getElementById("map-sel-count"), negEl = document.getElementById("map-neg-count");
  var negText = document.getElementById("map-neg-text"), noteEl = document.getElementById("map-sel-note");
  var findBtn = document.getElementById("map-find-similar"), negBtn = document.getElementById("map-as-negatives");
  var clearBtn = document.getElementById("map-clear");

  function idsWith(flag) {
    var out = [];
    for (var i = 0; i < n; i++) if (state[i] === flag) out.push(ids[i]);
    return out;
  }
  function spread(list, count) {
    // `count` ids evenly spaced through `list`: a large selection's mean, from a sample of it.
    if (list.length <= count) return list;
    var out = [];
    for (var k = 0; k < count; k++) out.push(list[Math.floor((k * list.length) / count)]);
    return out;
  }
  function query() {
    var neg = idsWith(2), pos = idsWith(1);
    neg = spread(neg, Math.floor(MAX_QUERY / 2));
    pos = spread(pos, MAX_QUERY - neg.length);
    return { pos: pos, neg: neg };
  }
  function updateSelection() {
    var sel = idsWith(1).length, neg = idsWith(2).length, q = query();
    countEl.textContent = String(sel);
    negEl.textContent = String(neg);
    negText.hidden = !neg;
    findBtn.disabled = !sel;
    negBtn.disabled = !sel;
    clearBtn.disabled = !sel && !neg;
    noteEl.textContent = sel + neg > q.pos.length + q.neg.length
      ? " · the search uses " + (q.pos.length + q.neg.length) + " of them, evenly spread (at most " + MAX_QUERY + ")"
      : "";
    root.dataset.selected = String(sel);
    root.dataset.negatives = String(neg);
    if (sel + neg <= 500) fetchNames(idsWith(1).concat(idsWith(2)));
  }
  findBtn.addEventListener("click", function () {
    var q = query();
    if (!q.pos.length) return;
    var url = root.dataset.similarManyUrl + "?pos=" + q.pos.join(",");
    if (q.neg.length) url += "&neg=" + q.neg.join(",");
    window.location.href = url;
  });
  negBtn.addEventListener("click", function () {
    for (var i = 0; i < n; i++) if (state[i] === 1) state[i] = 2;
    dirty = true; updateSelection();
  });
  clearBtn.addEventListener("click", function () { state.fill(0); dirty = true; updateSelection(); });

  function setTool(name) {
    tool = name;
    document.getElementById("map-tool-pan").setAttribute("aria-pressed", String(name === "pan"));
    document.getElementById("map-tool-lasso").setAttribute("aria-pressed", String(name === "lasso"));
    canvas.style.cursor = name === "lasso" ? "crosshair" : "grab";
  }
  canvas.addEventListener("keydown", function (e) {
    // Keyboard: arrows pan by a tenth of the view, + and - zoom about the centre, 0 resets.
    var step = Math.min(width, height) / 10, handled = true;
    if (e.key === "ArrowLeft") view.tx += step;
    else if (e.key === "ArrowRight") view.tx -= step;
    else if (e.key === "ArrowUp") view.ty += step;
    else if (e.key === "ArrowDown") view.ty -= step;
    else if (e.key === "+" || e.key === "=") zoomAt(1.6, width / 2, height / 2);
    else if (e.key === "-") zoomAt(1 / 1.6, width / 2, height / 2);
    else if (e.key === "0") fit();
    else handled = false;
    if (handled) { e.preventDefault(); dirty = true; }
  });
  document.getElementById("map-tool-pan").addEventListener("click", function () { setTool("pan"); });
  document.getElementById("map-tool-lasso").addEventListener("click", function () { setTool("lasso"); });
  document.getElementById("map-zoom-in").addEventListener("click", function () { zoomAt(1.6, width / 2, height / 2); });
  document.getElementById("map-zoom-out").addEventListener("click", function () { zoomAt(1 / 1.6, width / 2, height / 2); });
  document.getElementById("map-reset").addEventListener("click", fit);
  window.addEventListener("resize", function () {
    var wx = (width / 2 - view.tx) / view.scale, wy = (height / 2 - view.ty) / view.scale, css = view.scale / dpr;
    resize();
    view.scale = css * dpr; view.tx = width / 2 - wx * view.scale; view.ty = height / 2 - wy * view.scale;
  });
  var themeWatch = new MutationObserver(function () { readColours(); dirty = true; });
  themeWatch.observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });

  // For people's scripts and the browser tests: where a point is drawn, and what is selected.
  window.imagesearchMap = {
    count: function () { return n; },
    ids: function () { return ids ? Array.from(ids) : []; },
    screenPosition: function (id) {
      for (var i = 0; i < n; i++) if (ids[i] === id) return { x: (xs[i] * view.scale + view.tx) / dpr, y: (ys[i] * view.scale + view.ty) / dpr };
      return null;
    },
    selected: function () { return idsWith(1); },
    negatives: function () { return idsWith(2); },
    view: function () { return { scale: view.scale / dpr, tx: view.tx / dpr, ty: view.ty / dpr }; },
    stats: function () { return { frames: stats.frames, drawMs: stats.drawMs.slice(), lastDrawMs: lastDraw }; },
  };

  // --- Loading ----------------------------------------------------------
  readColours();
  resize();
  fetch(root.dataset.pointsUrl, { credentials: "same-origin" })
    .then(function (r) {
      if (!r.ok) throw new Error("the map could not be loaded (" + r.status + ")");
      return r.arrayBuffer();
    })
    .then(function (buf) {
      // Layout of the file: gallery/analysis/layout.py (16-byte header, int64 ids, float32 x, y pairs).
      var head = new DataView(buf, 0, 16);
      var magic = String.fromCharCode.apply(null, new Uint8Array(buf, 0, 5));
      if (magic !== "ISMAP") throw new Error("the map file is not one");
      n = head.getUint32(8, true);
      var big = new BigInt64Array(buf, 16, n), xy = new Float32Array(buf, 16 + 8 * n, 2 * n);
      ids = new Float64Array(n); xs = new Float32Array(n); ys = new Float32Array(n);
      for (var i = 0; i < n; i++) { ids[i] = Number(big[i]); xs[i] = xy[2 * i]; ys[i] = 1 - xy[2 * i + 1]; } // y up
      state = new Uint8Array(n);
      buildGrid();
      fit();
      loading.hidden = true;
      root.dataset.points = String(n);
      root.dataset.ready = "1";
      canvas.setAttribute("aria-label", "Map of " + n + " images: similar pictures lie close together. Arrow keys pan, plus and minus zoom, 0 resets");
      updateSelection();
      requestAnimationFrame(frame);
    })
    .catch(function (err) {
      loading.textContent = "The map could not be loaded: " + err.message + ". Reload the page to try again.";
      loading.classList.add("note-bad");
    });
})();
