// The page as palaestra's web envs show it: a flat list of the visible elements worth naming,
// in document order, each tagged with a stable id (the `data-pid` attribute: an element keeps
// its id for as long as it exists; a new document numbers from 1 again, so the same page
// always gets the same ids). Called with {root: CSS selector or null, skip: CSS selector or
// null, maxName: longest name kept}. Returns {elements, url, title, scrollY, scrollMax}.
(args) => {
  const MAX_NAME = args.maxName || 120;
  const MAX_TEXT = 400;  // text, rows and headings are read, not named: they may be longer
  const MAX_VALUE = 2000;  // a text area's text is shown whole (up to this), so that it can be edited
  const root = (args.root && document.querySelector(args.root)) || document.body;
  const skip = args.skip ? new Set(document.querySelectorAll(args.skip)) : new Set();
  if (window.__palaestraNext === undefined) window.__palaestraNext = 1;
  const INLINE = new Set(["b", "i", "em", "strong", "span", "small", "code", "mark", "abbr", "sup",
    "sub", "u", "s", "time", "br", "wbr", "q", "cite", "kbd", "var", "font", "data"]);
  const CONTROLS = "a[href],button,input,select,textarea,summary,[role],[contenteditable]";
  const INLINE_CONTROLS = new Set(["a", "button", "input", "select", "label", "span"]);
  const INTERACTIVE = new Set(["link", "button", "textbox", "searchbox", "checkbox", "radio",
    "combobox", "listbox", "slider", "spinbutton", "tab", "menuitem", "switch", "option", "clickable"]);
  const SKIP_TAGS = new Set(["script", "style", "noscript", "template", "head", "svg", "canvas"]);
  const norm = (text) => (text || "").replace(/\s+/g, " ").trim();
  const cut = (text) => (text.length > MAX_NAME ? text.slice(0, MAX_NAME - 1) + "…" : text);
  const viewHeight = window.innerHeight || 800;
  const out = [];

  function visible(el) {
    if (el.checkVisibility) return el.checkVisibility({ visibilityProperty: true });
    const style = getComputedStyle(el);
    return style.display !== "none" && style.visibility !== "hidden";
  }

  function roleOf(el) {
    const explicit = el.getAttribute("role");
    if (explicit) return explicit.split(" ")[0];
    const tag = el.tagName.toLowerCase();
    if (tag === "a") return el.hasAttribute("href") ? "link" : null;
    if (tag === "button" || tag === "summary") return "button";
    if (tag === "select") return el.multiple ? "listbox" : "combobox";
    if (tag === "textarea") return "textbox";
    if (tag === "input") {
      const type = (el.getAttribute("type") || "text").toLowerCase();
      if (type === "hidden") return null;
      if (["button", "submit", "reset", "image"].includes(type)) return "button";
      if (type === "checkbox") return "checkbox";
      if (type === "radio") return "radio";
      if (type === "range") return "slider";
      if (type === "search") return "searchbox";
      if (type === "number") return "spinbutton";
      return "textbox";
    }
    if (/^h[1-6]$/.test(tag)) return "heading";
    if (tag === "img") return el.getAttribute("alt") ? "img" : null;
    if (tag === "tr") return "row";
    if (el.isContentEditable && el.parentElement && !el.parentElement.isContentEditable) return "textbox";
    // Script-driven controls (a span with a click handler) show themselves by the pointer cursor.
    if (getComputedStyle(el).cursor === "pointer" && el.parentElement
        && getComputedStyle(el.parentElement).cursor !== "pointer") return "clickable";
    return null;
  }

  function labelText(el) {
    const labelled = el.getAttribute("aria-labelledby");
    if (labelled) {
      const parts = labelled.split(/\s+/).map((id) => document.getElementById(id)).filter(Boolean);
      if (parts.length) return norm(parts.map((part) => part.textContent).join(" "));
    }
    if (el.id) {
      const label = document.querySelector(`label[for="${CSS.escape(el.id)}"]`);
      if (label) return norm(label.textContent);
    }
    const wrapping = el.closest("label");
    if (wrapping) return norm(wrapping.textContent);
    return "";
  }

  function nameOf(el, role) {
    const aria = norm(el.getAttribute("aria-label"));
    if (aria) return aria;
    const tag = el.tagName.toLowerCase();
    if (tag === "input" || tag === "select" || tag === "textarea") {
      const type = (el.getAttribute("type") || "").toLowerCase();
      if (["button", "submit", "reset"].includes(type)) return norm(el.value) || type;
      const label = labelText(el);
      if (label) return label;
      return norm(el.getAttribute("placeholder") || el.getAttribute("title") || el.getAttribute("name"));
    }
    if (tag === "img") return norm(el.getAttribute("alt"));
    if (role === "row") {
      return norm(Array.from(el.children).map((cell) => norm(cell.innerText || cell.textContent)).join(" | "));
    }
    const text = norm(el.innerText || el.textContent);
    return text || norm(el.getAttribute("title"));
  }

  function looseText(el) {
    // The element's text outside its controls.
    let text = "";
    for (const node of el.childNodes) {
      if (node.nodeType === Node.TEXT_NODE) text += node.textContent + " ";
      else if (node.nodeType === Node.ELEMENT_NODE && !INTERACTIVE.has(roleOf(node) || "")) text += looseText(node) + " ";
    }
    return text;
  }

  function directText(el) {
    let text = "";
    for (const node of el.childNodes) if (node.nodeType === Node.TEXT_NODE) text += node.textContent + " ";
    return norm(text);
  }

  function emit(el, role, name, extra) {
    if (!el.dataset.pid) el.dataset.pid = String(window.__palaestraNext++);
    const rect = el.getBoundingClientRect();
    const limit = INTERACTIVE.has(role) ? MAX_NAME : MAX_TEXT;
    out.push(Object.assign({
      pid: Number(el.dataset.pid), role: role, name: name.length > limit ? name.slice(0, limit - 1) + "…" : name,
      tag: el.tagName.toLowerCase(),
      inView: rect.bottom > 0 && rect.top < viewHeight, top: Math.round(rect.top + window.scrollY),
    }, extra || {}));
  }

  function fieldState(el, role) {
    const extra = {};
    const tag = el.tagName.toLowerCase();
    if (role === "checkbox" || role === "radio" || role === "switch") {
      extra.checked = tag === "input" ? el.checked : el.getAttribute("aria-checked") === "true";
    } else if (tag === "select") {
      extra.options = Array.from(el.options).map((option) => cut(norm(option.textContent)));
      const chosen = el.selectedOptions[0];
      extra.value = chosen ? norm(chosen.textContent) : "";
    } else if (tag === "input" || tag === "textarea") {
      const type = (el.getAttribute("type") || "").toLowerCase();
      if (!["button", "submit", "reset"].includes(type)) {
        const limit = tag === "textarea" ? MAX_VALUE : MAX_NAME;
        const value = el.value.length > limit ? el.value.slice(0, limit - 1) + "…" : el.value;
        extra.value = type === "password" ? "•".repeat(el.value.length) : value;
      }
    } else if (el.isContentEditable) {
      extra.value = cut(norm(el.innerText));
    }
    if (el.disabled || el.getAttribute("aria-disabled") === "true") extra.disabled = true;
    if (el.getAttribute("aria-selected") === "true") extra.selected = true;
    if (role === "link") extra.href = el.getAttribute("href");
    return extra;
  }

  function emitControl(el, role) {
    emit(el, role, nameOf(el, role), fieldState(el, role));
  }

  function emitControlsWithin(el) {
    // The controls inside an element already shown as one line (a row, a heading, a sentence);
    // a control inside another control is part of it.
    const shown = [];
    for (const inner of el.querySelectorAll("*")) {
      const role = roleOf(inner);
      if (role === null || !INTERACTIVE.has(role) || skip.has(inner) || !visible(inner)) continue;
      if (shown.some((outer) => outer.contains(inner))) continue;
      emitControl(inner, role);
      shown.push(inner);
    }
  }

  function inlineOnly(el, controlsToo) {
    // Whether the element holds only text and inline markup (with controlsToo: inline controls too).
    for (const child of el.children) {
      const tag = child.tagName.toLowerCase();
      const role = roleOf(child);
      const control = role !== null && INTERACTIVE.has(role);
      if (control && controlsToo && INLINE_CONTROLS.has(tag)) continue;
      if (!INLINE.has(tag) || control || !inlineOnly(child, controlsToo)) return false;
    }
    return true;
  }

  function walk(el) {
    if (skip.has(el)) return;
    const tag = el.tagName.toLowerCase();
    if (SKIP_TAGS.has(tag) || el.getAttribute("aria-hidden") === "true" || !visible(el)) return;
    const role = roleOf(el);
    if (role !== null && INTERACTIVE.has(role)) {
      emitControl(el, role);
      if (!["select", "input", "textarea", "button"].includes(tag)) emitControlsWithin(el);
      return;
    }
    if (tag === "label" && (el.htmlFor || el.querySelector("input,select,textarea"))) {
      emitControlsWithin(el);
      return;  // its text names the control, which is shown with it
    }
    if (role === "heading" || role === "row" || role === "img") {
      const name = nameOf(el, role);
      if (name) emit(el, role, name);
      emitControlsWithin(el);
      return;
    }
    if (inlineOnly(el, false) || inlineOnly(el, true)) {
      // Text with inline markup is one line; a sentence with a link in it too, then its controls
      // (a bare row of links, like a menu, is just its links).
      const text = norm(el.innerText || el.textContent);
      if (text && /[A-Za-z0-9]/.test(looseText(el))) emit(el, role || "text", text);
      emitControlsWithin(el);
      return;
    }
    const own = directText(el);
    if (own) emit(el, role || "text", own);
    for (const child of el.children) walk(child);
  }

  walk(root);
  const scrollMax = Math.max(0, document.documentElement.scrollHeight - viewHeight);
  return { elements: out, url: location.href, title: document.title, scrollY: Math.round(window.scrollY),
    scrollMax: scrollMax };
}
