// A few lines of DOM building instead of a framework: the pages are small forms and tables.

export type Child = Node | string | null | undefined | false;

/** An element with attributes (`class`, `aria-*`, `data-*`...) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Readonly<Record<string, string>> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) element.append(child);
  }
  return element;
}

/** A button that runs `action` when pressed. */
export function button(
  label: string,
  action: () => void,
  attributes: Record<string, string> = {},
): HTMLButtonElement {
  const element = h("button", { type: "button", ...attributes }, label);
  element.addEventListener("click", action);
  return element;
}

/** A labelled input: the label names it for screen readers and for the tests. */
export function field(
  label: string,
  input: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement,
): HTMLElement {
  const id = `field-${label.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  input.id = id;
  return h("p", { class: "field" }, h("label", { for: id }, label), input);
}

/** A line that says what went wrong, read out by screen readers as it appears. */
export function alert(message: string): HTMLElement {
  return h("p", { class: "error", role: "alert" }, message);
}

/** A line that says what happened when nothing went wrong. */
export function status(message: string): HTMLElement {
  return h("p", { class: "notice", role: "status" }, message);
}

/** A table with a header row; `rows` are cells already built. */
export function table(caption: string, headers: string[], rows: Child[][]): HTMLTableElement {
  return h(
    "table",
    {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, ...headers.map((name) => h("th", { scope: "col" }, name)))),
    h("tbody", {}, ...rows.map((cells) => h("tr", {}, ...cells.map((cell) => h("td", {}, cell))))),
  );
}

/** What went wrong, as the sentence to show (ApiError's message is one already). */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
