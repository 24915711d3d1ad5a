// The ocgate administrators' console: fills the server-rendered page shells through the JSON
// API under /api/v1. No framework, no third-party code, no HTML parsing of data: every value
// reaches the page through textContent or setAttribute. Charts are SVG drawn here.
"use strict";

(function () {
  const API = "/api/v1";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const POLL_MS = 2000;

  // ------------------------------------------------------------------------------------------
  // Helpers

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") || "" : "";
  }

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const init = {
      method: method,
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    };
    if (method !== "GET") {
      init.headers["X-CSRF-Token"] = csrfToken();
    }
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(API + path, init);
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const message = data && typeof data.error === "string" ? data.error : "HTTP " + response.status;
      if (response.status === 401 && document.body.dataset.page !== "login") {
        window.location.assign("/login");
      }
      throw new ApiError(response.status, message);
    }
    return data;
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") {
        node.textContent = value;
      } else {
        node.setAttribute(key, value);
      }
    }
    for (const child of children || []) {
      node.append(child);
    }
    return node;
  }

  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      node.setAttribute(key, String(value));
    }
    return node;
  }

  let flashTimer = null;
  function flash(message, kind) {
    const box = document.getElementById("flash");
    if (!box) {
      return;
    }
    box.textContent = message;
    box.className = kind === "error" ? "error" : "ok";
    if (flashTimer !== null) {
      clearTimeout(flashTimer);
    }
    flashTimer = setTimeout(function () {
      box.textContent = "";
      box.className = "";
    }, 8000);
  }

  function confirmAction(text) {
    const dialog = document.getElementById("confirm");
    if (!dialog || typeof dialog.showModal !== "function") {
      return Promise.resolve(window.confirm(text));
    }
    document.getElementById("confirm-text").textContent = text;
    return new Promise(function (resolve) {
      const yes = document.getElementById("confirm-yes");
      const no = document.getElementById("confirm-no");
      function finish(answer) {
        yes.removeEventListener("click", onYes);
        no.removeEventListener("click", onNo);
        dialog.removeEventListener("cancel", onNo);
        if (dialog.open) {
          dialog.close();
        }
        resolve(answer);
      }
      function onYes() {
        finish(true);
      }
      function onNo() {
        finish(false);
      }
      yes.addEventListener("click", onYes);
      no.addEventListener("click", onNo);
      dialog.addEventListener("cancel", onNo);
      dialog.showModal();
    });
  }

  // Runs an action, flashes its outcome, and returns whether it succeeded.
  async function act(promise, success) {
    try {
      await promise;
      flash(success, "ok");
      return true;
    } catch (error) {
      flash(error.message, "error");
      return false;
    }
  }

  function formatBytes(n) {
    if (typeof n !== "number" || !isFinite(n)) {
      return "";
    }
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = n;
    let unit = 0;
    while (Math.abs(value) >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return (unit === 0 ? String(Math.round(value)) : value.toFixed(1)) + " " + units[unit];
  }

  function formatRate(n) {
    return typeof n === "number" && isFinite(n) ? formatBytes(n) + "/s" : "–";
  }

  function formatTime(epoch) {
    if (typeof epoch !== "number" || !epoch) {
      return "";
    }
    const date = new Date(epoch * 1000);
    const pad = function (v) {
      return String(v).padStart(2, "0");
    };
    return (
      date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) + " " +
      pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds())
    );
  }

  function formatDuration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (d) {
      return d + "d " + h + "h";
    }
    if (h) {
      return h + "h " + m + "m";
    }
    return m + "m " + (s % 60) + "s";
  }

  function parseGroups(text) {
    return text.split(",").map(function (g) {
      return g.trim();
    }).filter(function (g) {
      return g.length > 0;
    });
  }

  function setCells(row, values) {
    values.forEach(function (value, i) {
      const cell = row.cells[i];
      if (cell.textContent !== value) {
        cell.textContent = value;
      }
    });
  }

  function clear(node) {
    while (node.firstChild) {
      node.removeChild(node.firstChild);
    }
  }

  function emptyRow(tbody, columns, text) {
    tbody.append(el("tr", { class: "empty" }, [el("td", { colspan: String(columns), text: text })]));
  }

  // ------------------------------------------------------------------------------------------
  // Login and the frame

  function initLogin() {
    const form = document.getElementById("login-form");
    const error = document.getElementById("login-error");
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      error.textContent = "";
      const button = document.getElementById("login");
      button.disabled = true;
      try {
        await api("POST", "/login", {
          username: document.getElementById("username").value,
          password: document.getElementById("password").value,
          otp: document.getElementById("otp").value.trim(),
        });
        window.location.assign("/sessions");
      } catch (e) {
        error.textContent = e.message;
        document.getElementById("password").value = "";
        document.getElementById("otp").value = "";
        button.disabled = false;
      }
    });
  }

  function initFrame() {
    const logout = document.getElementById("logout");
    if (logout) {
      logout.addEventListener("click", async function () {
        try {
          await api("POST", "/logout");
        } catch (_) {
          // The session may already be gone; the login page is the destination either way.
        }
        window.location.assign("/login");
      });
    }
  }

  // ------------------------------------------------------------------------------------------
  // Sessions

  function initSessions() {
    const tbody = document.querySelector("#sessions-table tbody");
    const nodeHeader = document.querySelector("#sessions-table th.node");
    const previous = new Map(); // rowKey -> {rx, tx, t}
    let timer = null;

    // Tunnel ids are per gateway: with a shared session store, two nodes may both list id 7,
    // so a row is known by its node and its id.
    function rowKey(node, id) {
      return JSON.stringify([node || "", String(id)]);
    }

    function transport(user) {
      return user.dtls_cipher ? "DTLS" : "TLS";
    }

    function rowValues(user, rate) {
      const addresses = [user.ipv4, user.ipv6].filter(Boolean).join(" ");
      const since = user.connected_at
        ? formatTime(user.connected_at) + " (" + formatDuration(Date.now() / 1000 - user.connected_at) + ")"
        : "";
      return [
        user.username || "(none)",
        user.groupname || "(none)",
        user.remote_ip || "",
        addresses,
        transport(user),
        user.dtls_cipher || "",
        formatBytes(user.rx),
        formatBytes(user.tx),
        rate ? formatRate(rate.rx) + " / " + formatRate(rate.tx) : "–",
        since,
        user.node || "",
      ];
    }

    function makeRow(user) {
      const row = el("tr", {
        "data-user": user.username,
        "data-id": String(user.id),
        "data-node": user.node || "",
      });
      for (let i = 0; i < 11; i += 1) {
        row.append(el("td"));
      }
      row.cells[0].className = "user";
      row.cells[3].className = "wrap";
      row.cells[9].className = "wrap";
      row.cells[10].className = "node";
      const disconnect = el("button", { type: "button", class: "disconnect", text: "Disconnect" });
      const terminate = el("button", { type: "button", class: "terminate", text: "Terminate" });
      disconnect.setAttribute("aria-label", "Disconnect " + user.username + " (id " + user.id + ")");
      terminate.setAttribute("aria-label", "Terminate " + user.username + " (id " + user.id + ")");
      disconnect.addEventListener("click", function () {
        control(user, "disconnect", "Disconnect " + user.username + " (id " + user.id + ")? The client may reconnect.");
      });
      terminate.addEventListener("click", function () {
        control(user, "terminate", "Terminate " + user.username + " (id " + user.id + ")? Its session cookie becomes invalid.");
      });
      row.append(el("td", { class: "actions" }, [disconnect, terminate]));
      return row;
    }

    async function control(user, verb, question) {
      if (!(await confirmAction(question))) {
        return;
      }
      const done = await act(
        api("POST", "/sessions/" + encodeURIComponent(user.id) + "/" + verb),
        (verb === "disconnect" ? "Disconnected " : "Terminated ") + user.username,
      );
      if (done) {
        refresh();
      }
    }

    async function refresh() {
      let data;
      try {
        data = await api("GET", "/sessions");
      } catch (e) {
        flash(e.message, "error");
        return;
      }
      const now = Date.now() / 1000;
      const seen = new Set();
      const rows = new Map();
      for (const row of tbody.querySelectorAll("tr[data-id]")) {
        rows.set(rowKey(row.dataset.node, row.dataset.id), row);
      }
      for (const empty of tbody.querySelectorAll("tr.empty")) {
        empty.remove();
      }
      // As in "ocgate ctl show users": the node column appears when the listing spans several
      // gateways; a lone gateway's rows all name the same node, so the column stays hidden.
      const nodes = new Set(
        data.users.map(function (user) {
          return user.node || "";
        }),
      );
      const showNodes = nodes.size > 1;
      if (nodeHeader) {
        nodeHeader.hidden = !showNodes;
      }
      for (const user of data.users) {
        const key = rowKey(user.node, user.id);
        seen.add(key);
        const before = previous.get(key);
        let rate = null;
        if (before && now > before.t) {
          rate = {
            rx: Math.max(0, (user.rx - before.rx) / (now - before.t)),
            tx: Math.max(0, (user.tx - before.tx) / (now - before.t)),
          };
        }
        previous.set(key, { rx: user.rx, tx: user.tx, t: now });
        let row = rows.get(key);
        if (!row) {
          row = makeRow(user);
          tbody.append(row);
        }
        setCells(row, rowValues(user, rate));
        row.cells[10].hidden = !showNodes;
      }
      for (const [key, row] of rows) {
        if (!seen.has(key)) {
          row.remove();
          previous.delete(key);
        }
      }
      if (data.users.length === 0) {
        emptyRow(tbody, 11, "No user is connected.");
      }
      const stamp = document.getElementById("sessions-updated");
      if (stamp) {
        stamp.textContent = "Updated " + formatTime(now) + ".";
      }
    }

    async function loop() {
      await refresh();
      timer = setTimeout(loop, POLL_MS);
    }
    document.addEventListener("visibilitychange", function () {
      if (document.hidden && timer !== null) {
        clearTimeout(timer);
        timer = null;
      } else if (!document.hidden && timer === null) {
        loop();
      }
    });
    loop();
  }

  // ------------------------------------------------------------------------------------------
  // Users

  function initUsers() {
    const tbody = document.querySelector("#users-table tbody");
    const note = document.getElementById("users-note");

    async function refresh() {
      let data;
      try {
        data = await api("GET", "/users");
      } catch (e) {
        flash(e.message, "error");
        return;
      }
      note.textContent = data.editable ? "" : "Users cannot be edited here: " + data.reason;
      clear(tbody);
      for (const user of data.users) {
        tbody.append(userRow(user));
      }
      if (data.users.length === 0) {
        emptyRow(tbody, 5, "No user.");
      }
    }

    function userRow(user) {
      const link = el("a", { class: "user-detail", href: "/users/" + encodeURIComponent(user.username), text: user.username });
      const lock = el("button", { type: "button", class: "lock", text: "Lock" });
      const unlock = el("button", { type: "button", class: "unlock", text: "Unlock" });
      const remove = el("button", { type: "button", class: "delete", text: "Delete" });
      lock.setAttribute("aria-label", "Lock " + user.username);
      unlock.setAttribute("aria-label", "Unlock " + user.username);
      remove.setAttribute("aria-label", "Delete " + user.username);
      const path = "/users/" + encodeURIComponent(user.username);
      lock.addEventListener("click", async function () {
        if (await act(api("POST", path + "/lock"), "Locked " + user.username)) {
          refresh();
        }
      });
      unlock.addEventListener("click", async function () {
        if (await act(api("POST", path + "/unlock"), "Unlocked " + user.username)) {
          refresh();
        }
      });
      remove.addEventListener("click", async function () {
        if (!(await confirmAction("Delete user " + user.username + " and its OTP entry?"))) {
          return;
        }
        if (await act(api("DELETE", path), "Deleted " + user.username)) {
          refresh();
        }
      });
      return el("tr", { "data-user": user.username }, [
        el("td", {}, [link]),
        el("td", { class: "groups", text: user.groups.join(", ") }),
        el("td", { class: "locked", text: user.locked ? "yes" : "no" }),
        el("td", { class: "otp", text: user.otp ? "yes" : "no" }),
        el("td", { class: "actions" }, [lock, unlock, remove]),
      ]);
    }

    document.getElementById("add-user").addEventListener("submit", async function (event) {
      event.preventDefault();
      const name = document.getElementById("new-username").value.trim();
      const body = {
        username: name,
        password: document.getElementById("new-password").value,
        groups: parseGroups(document.getElementById("new-groups").value),
      };
      if (await act(api("POST", "/users", body), "Added " + name)) {
        event.target.reset();
        refresh();
      }
    });
    refresh();
  }

  function initUser() {
    const name = document.getElementById("user-name").textContent;
    const path = "/users/" + encodeURIComponent(name);
    const state = document.getElementById("otp-state");

    async function refresh() {
      try {
        const data = await api("GET", "/users");
        const user = data.users.find(function (u) {
          return u.username === name;
        });
        if (!user) {
          state.textContent = "No such user in the password file.";
          return;
        }
        document.getElementById("groups-input").value = user.groups.join(", ");
        state.textContent = !data.otp_available
          ? "No OTP file is configured."
          : user.otp ? "The user has an OTP secret." : "The user has no OTP secret.";
      } catch (e) {
        flash(e.message, "error");
      }
      try {
        const config = await api("GET", path + "/config");
        document.getElementById("user-config").textContent = config.text || "(no per-user configuration)";
      } catch (e) {
        flash(e.message, "error");
      }
    }

    document.getElementById("set-password").addEventListener("submit", async function (event) {
      event.preventDefault();
      const input = document.getElementById("password-new");
      if (await act(api("PUT", path + "/password", { password: input.value }), "Password of " + name + " set")) {
        input.value = "";
      }
    });
    document.getElementById("groups-form").addEventListener("submit", async function (event) {
      event.preventDefault();
      const groups = parseGroups(document.getElementById("groups-input").value);
      if (await act(api("PUT", path + "/groups", { groups: groups }), "Groups of " + name + " saved")) {
        refresh();
      }
    });
    document.getElementById("otp-enroll").addEventListener("click", async function () {
      let data;
      try {
        data = await api("POST", path + "/otp");
      } catch (e) {
        flash(e.message, "error");
        return;
      }
      document.getElementById("otp-secret").textContent = data.secret;
      document.getElementById("otp-uri").textContent = data.uri;
      const holder = document.getElementById("otp-qr");
      clear(holder);
      const doc = new DOMParser().parseFromString(data.qr_svg, "image/svg+xml");
      const svg = doc.documentElement;
      if (svg && svg.nodeName.toLowerCase() === "svg") {
        holder.append(document.importNode(svg, true));
      }
      document.getElementById("otp-result").hidden = false;
      flash("New OTP secret for " + name + ": shown once", "ok");
      refresh();
    });
    document.getElementById("otp-reset").addEventListener("click", async function () {
      if (await act(api("DELETE", path + "/otp"), "OTP of " + name + " removed")) {
        document.getElementById("otp-result").hidden = true;
        clear(document.getElementById("otp-qr"));
        document.getElementById("otp-secret").textContent = "";
        document.getElementById("otp-uri").textContent = "";
        refresh();
      }
    });
    refresh();
  }

  // ------------------------------------------------------------------------------------------
  // Bans and server

  function initBans() {
    const tbody = document.querySelector("#bans-table tbody");

    async function refresh() {
      let data;
      try {
        data = await api("GET", "/bans");
      } catch (e) {
        flash(e.message, "error");
        return;
      }
      clear(tbody);
      for (const ban of data.bans) {
        const unban = el("button", { type: "button", class: "unban", text: "Unban" });
        unban.setAttribute("aria-label", "Unban " + ban.ip);
        unban.addEventListener("click", async function () {
          if (await act(api("DELETE", "/bans/" + encodeURIComponent(ban.ip)), "Unbanned " + ban.ip)) {
            refresh();
          }
        });
        tbody.append(el("tr", { "data-ip": ban.ip }, [
          el("td", { text: ban.ip }),
          el("td", { text: String(ban.score) }),
          el("td", { text: ban.expires ? formatTime(ban.expires) : "not banned" }),
          el("td", { text: ban.since ? formatTime(ban.since) : "–" }),
          el("td", { class: "actions" }, [unban]),
        ]));
      }
      if (data.bans.length === 0) {
        emptyRow(tbody, 5, "No address is banned.");
      }
    }
    refresh();
  }

  const TIME_KEYS = new Set(["up_since", "last_stats_reset", "drain_deadline"]);

  function initServer() {
    async function refresh() {
      try {
        const data = await api("GET", "/server");
        const dl = document.getElementById("status");
        clear(dl);
        for (const [key, value] of Object.entries(data.status)) {
          let text = value === null ? "–" : String(value);
          if (TIME_KEYS.has(key) && typeof value === "number" && value) {
            text = formatTime(value);
          } else if ((key === "rx" || key === "tx") && typeof value === "number") {
            text = formatBytes(value);
          }
          dl.append(el("dt", { text: key.replace(/_/g, " ") }), el("dd", { "data-key": key, text: text }));
        }
        const ul = document.getElementById("warnings");
        clear(ul);
        for (const warning of data.warnings) {
          ul.append(el("li", { text: warning }));
        }
        if (data.warnings.length === 0) {
          ul.append(el("li", { class: "empty", text: "No warning." }));
        }
      } catch (e) {
        flash(e.message, "error");
      }
      try {
        const audit = await api("GET", "/audit");
        const tbody = document.querySelector("#audit-table tbody");
        clear(tbody);
        for (const entry of audit.entries.slice().reverse()) {
          tbody.append(el("tr", { "data-action": entry.action }, [
            el("td", { text: formatTime(entry.time) }),
            el("td", { text: entry.who }),
            el("td", { text: entry.role }),
            el("td", { text: entry.source }),
            el("td", { text: entry.action }),
            el("td", { text: entry.target }),
            el("td", { text: entry.outcome }),
          ]));
        }
      } catch (e) {
        flash(e.message, "error");
      }
    }
    document.getElementById("reload").addEventListener("click", async function () {
      await act(api("POST", "/server/reload"), "Configuration reloaded");
      refresh();
    });
    refresh();
  }

  // ------------------------------------------------------------------------------------------
  // Telemetry and charts

  function rowsOf(data, key) {
    if (Array.isArray(data)) {
      return data;
    }
    if (data && Array.isArray(data[key])) {
      return data[key];
    }
    return [];
  }

  function chartMessage(svg, text) {
    svg.setAttribute("viewBox", "0 0 400 40");
    const label = svgEl("text", { x: 8, y: 24, class: "chart-note" });
    label.textContent = text;
    svg.append(label);
  }

  function resetChart(svg) {
    for (const child of Array.from(svg.childNodes)) {
      if (child.nodeName.toLowerCase() !== "title") {
        svg.removeChild(child);
      }
    }
  }

  // Horizontal bars: one row per key, the longest bar spans the chart.
  function barChart(svg, rows) {
    resetChart(svg);
    if (rows.length === 0) {
      chartMessage(svg, "No data.");
      return;
    }
    const rowHeight = 22;
    const labelWidth = 140;
    const barSpace = 180;
    const height = rows.length * rowHeight + 8;
    svg.setAttribute("viewBox", "0 0 400 " + height);
    const max = Math.max.apply(null, rows.map(function (r) {
      return Number(r.bytes) || 0;
    })) || 1;
    rows.forEach(function (row, i) {
      const key = String(row.key === null || row.key === undefined ? "(unknown)" : row.key);
      const value = Number(row.bytes) || 0;
      const y = 4 + i * rowHeight;
      const label = svgEl("text", { x: labelWidth - 6, y: y + 15, class: "chart-label", "text-anchor": "end" });
      label.textContent = key.length > 22 ? key.slice(0, 21) + "…" : key;
      const bar = svgEl("rect", {
        class: "bar",
        "data-key": key,
        x: labelWidth,
        y: y + 2,
        height: rowHeight - 6,
        width: Math.max(1, (value / max) * barSpace),
      });
      const tip = svgEl("title");
      tip.textContent = key + ": " + formatBytes(value);
      bar.append(tip);
      const amount = svgEl("text", { x: labelWidth + Math.max(1, (value / max) * barSpace) + 4, y: y + 15, class: "chart-value" });
      amount.textContent = formatBytes(value);
      svg.append(label, bar, amount);
    });
  }

  // Vertical bars over time, one per step.
  function timelineChart(svg, points) {
    resetChart(svg);
    if (points.length === 0) {
      chartMessage(svg, "No data.");
      return;
    }
    const width = 1000;
    const height = 200;
    const bottom = 170;
    const left = 8;
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    const max = Math.max.apply(null, points.map(function (p) {
      return Number(p.bytes) || 0;
    })) || 1;
    const step = (width - 2 * left) / points.length;
    points.forEach(function (point, i) {
      const value = Number(point.bytes) || 0;
      const h = (value / max) * (bottom - 10);
      const bar = svgEl("rect", {
        class: "bar",
        "data-key": String(point.time),
        x: left + i * step + step * 0.1,
        y: bottom - Math.max(0.5, h),
        width: Math.max(1, step * 0.8),
        height: Math.max(0.5, h), // A hairline on the axis for an empty step.
      });
      const tip = svgEl("title");
      tip.textContent = formatTime(point.time) + ": " + formatBytes(value);
      bar.append(tip);
      svg.append(bar);
    });
    svg.append(svgEl("line", { x1: left, y1: bottom, x2: width - left, y2: bottom, class: "axis" }));
    const first = svgEl("text", { x: left, y: bottom + 18, class: "chart-label" });
    first.textContent = formatTime(points[0].time);
    const last = svgEl("text", { x: width - left, y: bottom + 18, class: "chart-label", "text-anchor": "end" });
    last.textContent = formatTime(points[points.length - 1].time);
    const peak = svgEl("text", { x: width - left, y: 12, class: "chart-value", "text-anchor": "end" });
    peak.textContent = "peak " + formatBytes(max);
    svg.append(first, last, peak);
  }

  function epochOf(id) {
    const value = document.getElementById(id).value;
    if (!value) {
      return null;
    }
    const ms = new Date(value).getTime();
    return isFinite(ms) ? Math.floor(ms / 1000) : null;
  }

  function initTelemetry() {
    const form = document.getElementById("flow-filter");

    function filters() {
      const params = new URLSearchParams();
      for (const [id, key] of [["f-user", "user"], ["f-udid", "udid"], ["f-process", "process"], ["f-host", "host"]]) {
        const value = document.getElementById(id).value.trim();
        if (value) {
          params.set(key, value);
        }
      }
      const since = epochOf("f-since");
      const until = epochOf("f-until");
      if (since !== null) {
        params.set("since", String(since));
      }
      if (until !== null) {
        params.set("until", String(until));
      }
      return params;
    }

    async function part(run) {
      try {
        await run();
      } catch (e) {
        flash(e.message, "error");
      }
    }

    async function flows(params) {
      const query = new URLSearchParams(params);
      query.set("limit", "200");
      const data = await api("GET", "/telemetry/flows?" + query.toString());
      const needle = document.getElementById("f-search").value.trim().toLowerCase();
      const tbody = document.querySelector("#flows-table tbody");
      clear(tbody);
      let shown = 0;
      for (const flow of rowsOf(data, "flows")) {
        const destination = (flow.dst_hostname ? flow.dst_hostname + " " : "") +
          (flow.dst_addr || "") + (flow.dst_port !== null && flow.dst_port !== undefined ? ":" + flow.dst_port : "");
        const values = [
          formatTime(flow.time_end),
          flow.vpn_user || "",
          flow.user || "",
          flow.udid || "",
          flow.process_name || "",
          destination,
          flow.protocol === 6 ? "TCP" : flow.protocol === 17 ? "UDP" : String(flow.protocol === null || flow.protocol === undefined ? "" : flow.protocol),
          formatBytes(flow.bytes_in),
          formatBytes(flow.bytes_out),
        ];
        if (needle && !values.join(" ").toLowerCase().includes(needle)) {
          continue;
        }
        const row = el("tr", { class: "flow" });
        values.forEach(function (value, i) {
          row.append(el("td", { class: i === 1 ? "vpn-user" : "", text: value }));
        });
        tbody.append(row);
        shown += 1;
      }
      if (shown === 0) {
        emptyRow(tbody, 9, "No flow matches.");
      }
    }

    async function charts(params) {
      const range = new URLSearchParams();
      for (const key of ["since", "until"]) {
        if (params.has(key)) {
          range.set(key, params.get(key));
        }
      }
      const talkers = new URLSearchParams(range);
      talkers.set("by", "user");
      await part(async function () {
        barChart(document.getElementById("chart-top-talkers"),
          rowsOf(await api("GET", "/telemetry/top?" + talkers.toString()), "top"));
      });
      const destinations = new URLSearchParams(range);
      destinations.set("by", "host");
      if (params.has("user")) {
        destinations.set("user", params.get("user"));
      }
      await part(async function () {
        barChart(document.getElementById("chart-top-destinations"),
          rowsOf(await api("GET", "/telemetry/top?" + destinations.toString()), "top"));
      });
      const now = Math.floor(Date.now() / 1000);
      const until = params.has("until") ? Number(params.get("until")) : now;
      const since = params.has("since") ? Number(params.get("since")) : until - 86400;
      const timeline = new URLSearchParams();
      if (params.has("user")) {
        timeline.set("user", params.get("user"));
      }
      timeline.set("since", String(since));
      timeline.set("until", String(until));
      timeline.set("step", String(Math.max(60, Math.ceil((until - since) / 48 / 60) * 60)));
      await part(async function () {
        const data = await api("GET", "/telemetry/timeline?" + timeline.toString());
        timelineChart(document.getElementById("chart-timeline"), rowsOf(data, "points"));
      });
    }

    async function inventory() {
      const endpoints = await api("GET", "/telemetry/endpoints?limit=100");
      const tbody = document.querySelector("#endpoints-table tbody");
      clear(tbody);
      for (const endpoint of rowsOf(endpoints, "endpoints")) {
        tbody.append(el("tr", { "data-udid": endpoint.udid }, [
          el("td", { text: endpoint.udid }),
          el("td", { text: endpoint.station_name || "" }),
          el("td", { text: [endpoint.os_name, endpoint.os_version].filter(Boolean).join(" ") }),
          el("td", { text: endpoint.agent_version || "" }),
          el("td", { text: formatTime(endpoint.last_seen) }),
        ]));
      }
      const exporters = await api("GET", "/telemetry/exporters");
      const body = document.querySelector("#exporters-table tbody");
      clear(body);
      for (const exporter of rowsOf(exporters, "exporters")) {
        body.append(el("tr", { "data-exporter": exporter.exporter }, [
          el("td", { text: exporter.exporter }),
          el("td", { text: exporter.live ? "yes" : "no" }),
          el("td", { text: String(exporter.records) }),
          el("td", { text: String(exporter.templates) }),
          el("td", { text: String(exporter.sequence_gaps) }),
          el("td", { text: String(exporter.malformed) }),
        ]));
      }
    }

    async function search() {
      const params = filters();
      await part(function () {
        return flows(params);
      });
      await charts(params);
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      search();
    });
    search();
    part(inventory);
  }

  // ------------------------------------------------------------------------------------------

  const PAGES = {
    login: initLogin,
    sessions: initSessions,
    users: initUsers,
    user: initUser,
    bans: initBans,
    server: initServer,
    telemetry: initTelemetry,
  };

  function start() {
    const page = document.body.dataset.page;
    if (page !== "login") {
      initFrame();
    }
    const init = PAGES[page];
    if (init) {
      init();
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
