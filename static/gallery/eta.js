// Time left for a gallery's embeddings, from the progress the page polls.
//
// Workers finish images in lumps (a batch of 32 is written at once, every few
// seconds), the first batch waits for the model to load, a backlog may clear a
// burst of quick images, and a worker can stall. "Remaining divided by the rate
// of the last minute" therefore runs long after a slow start and swings with
// every lump. This estimator instead:
//   - measures only between the moments progress was seen (the steps), so the
//     time before the first step (model load, or work begun before the page
//     opened) never counts;
//   - fits the rate to the recent steps with Theil-Sen (the median of the
//     slopes between every pair of steps): a burst or a late poll moves one
//     point, not the median;
//   - counts the time since the last step down, up to the usual gap between
//     steps; past that gap the work is overdue and the rate is lowered by the
//     overdue time, so the estimate grows while nothing finishes;
//   - smooths what it shows (exponentially, in seconds left, over `tau`), so the
//     words do not jump from one poll to the next.
// Pure: times are passed in (seconds), nothing here reads the clock or the page.
(function (root) {
  "use strict";

  function median(values) {
    var v = values.slice().sort(function (a, b) { return a - b; });
    var m = v.length >> 1;
    return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
  }

  function Eta(options) {
    options = options || {};
    this.window = options.window || 90;      // seconds of recent steps the rate is fitted to
    this.keep = options.keep || 4;           // ... but never fewer than this many steps
    this.minSteps = options.minSteps || 4;   // warm-up: no estimate before this many steps
    this.minSpan = options.minSpan || 8;     // ... spanning at least this many seconds
    this.tau = options.tau || 12;            // smoothing time constant of the shown value, seconds
    this.reset();
  }

  Eta.prototype.reset = function () {
    this.steps = [];        // {t, done} each time `done` was seen to grow
    this.last = null;       // the latest sample
    this.shown = null;      // the smoothed seconds left
    this.shownAt = null;
    this.rate = null;       // images per second of the latest fit
  };

  // Record a sample: at time `t` (seconds), `done` of `total` images are done.
  // Returns the smoothed seconds left, or null while warming up.
  Eta.prototype.add = function (t, done, total) {
    var prev = this.last;
    if (prev && (done < prev.done || t < prev.t)) { this.reset(); prev = null; }  // images removed, or a new run
    this.last = { t: t, done: done, total: total };
    if (prev && done > prev.done) {
      this.steps.push({ t: t, done: done });
      while (this.steps.length > this.keep && this.steps[1].t <= t - this.window) this.steps.shift();
    }
    var raw = this.raw(t);
    if (raw === null) { this.shown = null; this.shownAt = null; return null; }
    if (this.shown === null) this.shown = raw;
    else {
      var dt = Math.max(0, t - this.shownAt);
      var predicted = Math.max(0, this.shown - dt);  // the last value, counted down
      this.shown = predicted + (raw - predicted) * (1 - Math.exp(-dt / this.tau));
    }
    this.shownAt = t;
    return this.shown;
  };

  // The unsmoothed estimate at time `t` from the samples so far (null while warming up).
  Eta.prototype.raw = function (t) {
    var last = this.last, steps = this.steps, n = steps.length;
    if (!last) return null;
    var remaining = Math.max(0, last.total - last.done);
    if (remaining === 0) return 0;
    if (n < this.minSteps || steps[n - 1].t - steps[0].t < this.minSpan) { this.rate = null; return null; }
    var slopes = [], gaps = [];
    for (var i = 0; i < n; i++) {
      if (i > 0) gaps.push(steps[i].t - steps[i - 1].t);
      for (var j = i + 1; j < n; j++) slopes.push((steps[j].done - steps[i].done) / (steps[j].t - steps[i].t));
    }
    var rate = median(slopes), gap = median(gaps);
    var span = steps[n - 1].t - steps[0].t;
    var since = Math.max(0, t - steps[n - 1].t);
    var overdue = Math.max(0, since - gap);
    rate = rate * span / (span + overdue);   // a stall lowers the rate by the time it has lasted
    this.rate = rate;
    return Math.max(0, remaining / rate - Math.min(since, gap));
  };

  // Words for `seconds` left, rounded so they read calmly: "less than a minute", "about 3 min", "about 1.5 h".
  Eta.format = function (seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "Estimating time left…";
    if (seconds < 45) return "Less than a minute left";
    if (seconds < 90) return "About a minute left";
    if (seconds < 100 * 60) return "About " + Math.round(seconds / 60) + " min left";
    return "About " + (Math.round(seconds / 1800) / 2) + " h left";
  };

  Eta.formatRate = function (rate) {
    var digits = rate >= 10 ? 0 : rate >= 0.1 ? 1 : 2;
    return rate.toFixed(digits) + " images/s";
  };

  root.ImagesearchEta = Eta;
})(window);
