// bkvy dashboard: range and auto-refresh controls, local-time display, and refresh of the
// content area without a page reload (server-rendered HTML from /dashboard/fragment).
// Served from the same origin so the Content-Security-Policy needs no inline script.
(function () {
  'use strict';
  var content = document.getElementById('content');
  var form = document.getElementById('controls');
  var range = document.getElementById('range');
  var custom = document.getElementById('custom');
  var from = document.getElementById('from');
  var to = document.getElementById('to');
  var refresh = document.getElementById('refresh');
  var statusEl = document.getElementById('status');
  var timer = null;

  function pad(n) { return (n < 10 ? '0' : '') + n; }
  function inputValue(d) {
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) +
      'T' + pad(d.getHours()) + ':' + pad(d.getMinutes());
  }

  // Timestamps arrive as UTC ISO; show them in the viewer's time zone.
  function localize(root) {
    root.querySelectorAll('time[datetime]').forEach(function (el) {
      var d = new Date(el.getAttribute('datetime'));
      if (!isNaN(d)) { el.textContent = d.toLocaleString(); el.title = el.getAttribute('datetime'); }
    });
    root.querySelectorAll('[data-ts]').forEach(function (el) {
      var d = new Date(el.getAttribute('data-ts'));
      if (!isNaN(d)) {
        el.textContent = d.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
      }
    });
  }

  function query() {
    var p = new URLSearchParams();
    if (range.value === 'custom') {
      if (from.value) { p.set('start_date', new Date(from.value).toISOString()); }
      if (to.value) { p.set('end_date', new Date(to.value).toISOString()); }
    } else {
      p.set('hours', range.value);
    }
    return p;
  }

  function remember(p) {
    var q = new URLSearchParams(p);
    if (refresh.value !== '0') { q.set('refresh', refresh.value); }
    history.replaceState(null, '', '/dashboard?' + q.toString());
  }

  function load() {
    var p = query();
    statusEl.textContent = 'Loading…';
    fetch('/dashboard/fragment?' + p.toString(), { credentials: 'same-origin', headers: { Accept: 'text/html' } })
      .then(function (r) {
        return r.text().then(function (t) {
          if (!r.ok) {
            var msg = t;
            try { msg = JSON.parse(t).error; } catch (e) { /* not JSON */ }
            throw new Error(msg);
          }
          return t;
        });
      })
      .then(function (html) {
        content.innerHTML = html;
        localize(content);
        statusEl.textContent = 'Updated ' + new Date().toLocaleTimeString();
        remember(p);
      })
      .catch(function (e) { statusEl.textContent = 'Refresh failed: ' + e.message; });
  }

  function schedule() {
    if (timer) { clearInterval(timer); timer = null; }
    var s = parseInt(refresh.value, 10);
    if (s > 0) { timer = setInterval(load, s * 1000); }
    remember(query());
  }

  function showCustom() {
    custom.hidden = range.value !== 'custom';
    if (range.value === 'custom' && !from.value) {
      var now = new Date();
      from.value = inputValue(new Date(now.getTime() - 24 * 3600 * 1000));
      to.value = inputValue(now);
    }
  }

  var params = new URLSearchParams(location.search);
  if (params.get('start_date')) {
    var s = new Date(params.get('start_date'));
    if (!isNaN(s)) { from.value = inputValue(s); }
    var e = params.get('end_date') ? new Date(params.get('end_date')) : new Date();
    if (!isNaN(e)) { to.value = inputValue(e); }
    range.value = 'custom';
  }
  if (params.get('refresh')) {
    refresh.value = params.get('refresh');
    if (refresh.selectedIndex < 0) { refresh.value = '0'; }
  }
  showCustom();
  localize(document);
  schedule();

  range.addEventListener('change', function () {
    showCustom();
    if (range.value !== 'custom') { load(); }
  });
  refresh.addEventListener('change', schedule);
  form.addEventListener('submit', function (ev) { ev.preventDefault(); load(); });
}());
