// Warden console: follows live regions over server-sent events.
//
// An element with data-live="URL" and data-seq="N" is redrawn from the
// "update" events of URL?since=N: each carries the region's new HTML,
// drawn and escaped by the server. No inline script, no eval: the page's
// Content-Security-Policy allows neither.
'use strict';

(function () {
  function follow(region) {
    var url = region.getAttribute('data-live') + '?since=' + encodeURIComponent(region.getAttribute('data-seq') || '');
    var source = new EventSource(url);
    source.addEventListener('update', function (ev) {
      region.innerHTML = ev.data;
      region.setAttribute('data-seq', ev.lastEventId);
      region.dispatchEvent(new CustomEvent('warden:updated', { bubbles: true }));
    });
    source.addEventListener('signedout', function () {
      source.close();
      window.location.reload();
    });
    window.addEventListener('pagehide', function () { source.close(); });
  }

  function start() {
    var regions = document.querySelectorAll('[data-live]');
    for (var i = 0; i < regions.length; i++) {
      follow(regions[i]);
    }
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
