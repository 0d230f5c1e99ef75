// Hosted checkout: hints while typing (brand, Luhn, expiry), one submit per click, and the live status of
// the processing view. Everything also works without this file: the server checks the card, and the
// processing view refreshes itself.
"use strict";

(function () {
  var BRANDS = [["visa", /^4/], ["mastercard", /^(5[1-5]|2[2-7])/], ["amex", /^3[47]/], ["discover", /^6(011|5)/]];

  function digits(value) { return value.replace(/\D/g, ""); }

  function luhn(number) {
    var sum = 0;
    for (var i = 0; i < number.length; i++) {
      var d = +number[number.length - 1 - i];
      if (i % 2 === 1) { d *= 2; if (d > 9) d -= 9; }
      sum += d;
    }
    return number.length >= 12 && sum % 10 === 0;
  }

  function hint(id, text, bad) {
    var el = document.getElementById(id);
    if (!el) return;
    el.textContent = text;
    el.className = bad ? "hint bad" : "hint";
  }

  function cardForm(form) {
    var number = document.getElementById("number");
    var expiry = document.getElementById("expiry");
    number.addEventListener("input", function () {
      var n = digits(number.value);
      var brand = BRANDS.filter(function (b) { return b[1].test(n); })[0];
      if (n.length >= 12 && !luhn(n)) hint("number-hint", "This card number doesn't look right.", true);
      else hint("number-hint", brand ? brand[0].toUpperCase() : "", false);
    });
    expiry.addEventListener("input", function () {
      var m = /^(\d{1,2})\s*\/\s*(\d{2})$/.exec(expiry.value.trim());  // MM/YY, as the server wants
      if (!m) { hint("expiry-hint", expiry.value.trim().length >= 4 ? "Enter it as MM/YY." : "", expiry.value.trim().length >= 4); return; }
      var month = +m[1], year = 2000 + +m[2], now = new Date();
      var past = year < now.getFullYear() || (year === now.getFullYear() && month < now.getMonth() + 1);
      hint("expiry-hint", month < 1 || month > 12 ? "Month 01 to 12" : past ? "This card has expired." : "", month < 1 || month > 12 || past);
    });
    form.addEventListener("submit", function (event) {
      var button = document.getElementById("pay");
      // One payment per click: a second submit while the first is on its way is dropped (the server also
      // refuses to start a second payment while one is in progress).
      if (form.dataset.sent) { event.preventDefault(); return; }
      form.dataset.sent = "1";
      button.disabled = true;
      button.textContent = "Processing…";
    });
  }

  // The view shows one status (processing, or a UPI request waiting for the shopper's app): any other
  // status reloads the page, which then shows what comes next.
  function processing(section) {
    var id = section.dataset.session, shown = section.dataset.status;
    var reload = function () { window.location.replace("/checkout/" + id); };
    var poll = function () {
      fetch("/checkout/" + id + "/status", { cache: "no-store" })
        .then(function (r) { return r.json(); })
        .then(function (s) { if (s.payment_status !== shown) reload(); else setTimeout(poll, 2000); })
        .catch(function () { setTimeout(poll, 2000); });
    };
    if (!window.EventSource) { poll(); return; }
    var source = new EventSource("/checkout/" + id + "/events");
    source.addEventListener("status", function (e) {
      if (JSON.parse(e.data).status !== shown) { source.close(); reload(); }
    });
    source.onerror = function () { source.close(); poll(); };  // the stream is gone: fall back to polling
  }

  var form = document.getElementById("pay-form");
  if (form) cardForm(form);
  Array.prototype.forEach.call(document.querySelectorAll(".method-form"), function (f) {
    f.addEventListener("submit", function (event) {
      if (f.dataset.sent) { event.preventDefault(); return; }
      f.dataset.sent = "1";
      f.querySelector("button").disabled = true;
    });
  });
  var section = document.getElementById("processing");
  if (section) processing(section);
})();
