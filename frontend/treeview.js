// The variable tree as the ARIA tree pattern: one row per visible node (aria-level, aria-expanded, roving focus,
// arrow keys), a page of rows at a time, and rows kept between renders so a filter keystroke or a fold touches
// only the rows that changed.

import {formatShape, plural, visible} from './format.js';

/**
 * @typedef {import('./tree.js').TreeRow} TreeRow
 * @typedef {import('./tree.js').TreeNode} TreeNode
 * @typedef {import('./views.js').HistogramTarget} HistogramTarget
 * @typedef {{onOpen: function(HistogramTarget): void, onToggle: function(TreeNode, boolean): void}} TreeHandlers
 * @typedef {{selected: ?HistogramTarget, warnings: !Map<string, number>, empty: string}} TreeContext
 */

/** Rows rendered at first and added per "show more": a screenful many times over, never thousands. */
export const PAGE_ROWS = 200;

/**
 * Appends `text` to `parent` with a line-break opportunity after every `/` and `.`, so long names wrap between
 * their parts rather than mid-word.
 * @param {!HTMLElement} parent
 * @param {string} text
 */
export function appendBreakable(parent, text) {
  const parts = visible(text).split(/(?<=[/.])/);
  parts.forEach((part, i) => {
    if (i > 0) {
      parent.append(document.createElement('wbr'));
    }
    parent.append(document.createTextNode(part));
  });
}

/**
 * Whether a row's leaf is the open target.
 * @param {TreeNode} node
 * @param {?HistogramTarget} selected
 * @return {boolean}
 */
function isSelected(node, selected) {
  return node.kind === 'tag' && selected !== null && selected.run === node.run && selected.tag === node.tag &&
    (selected.lane === null || node.lane === null || selected.lane === node.lane);
}

/** A tree of rows rendered a page at a time. */
export class TreeView {
  /**
   * @param {TreeHandlers} handlers
   */
  constructor(handlers) {
    this.handlers = handlers;
    this.element = document.createElement('div');
    this.element.className = 'tree';
    this.element.setAttribute('data-testid', 'tree');
    this.element.setAttribute('role', 'tree');
    this.element.setAttribute('aria-label', 'Histograms by variable');
    this.more = document.createElement('button');
    this.more.type = 'button';
    this.more.className = 'tree-more';
    this.more.setAttribute('data-testid', 'tree-more');
    this.more.addEventListener('click', () => {
      this.limit += PAGE_ROWS;
      this.render(this.rows, this.context);
    });
    this.empty = document.createElement('p');
    this.empty.className = 'hint';
    /** @type {!Map<string, {row: !HTMLElement, key: string}>} */
    this.cache = new Map();
    /** @type {!Array<TreeRow>} */
    this.rows = [];
    /** @type {TreeContext} */
    this.context = {selected: null, warnings: new Map(), empty: ''};
    this.limit = PAGE_ROWS;
    /** @type {?string} */
    this.focusId = null;
    this.element.addEventListener('click', (event) => this.onClick(event));
    this.element.addEventListener('keydown', (event) => this.onKey(event));
    // Focus that arrives by Tab or a pointer moves the roving tab stop with it.
    this.element.addEventListener('focusin', (event) => {
      const row = /** @type {!Element} */ (event.target).closest('.tree-row');
      if (row) {
        this.focusId = row.getAttribute('data-id');
      }
    });
  }

  /**
   * Shows `rows`, reusing the element of every row whose content did not change.
   * @param {!Array<TreeRow>} rows output of visibleRows
   * @param {TreeContext} context
   * @param {{reveal: boolean}=} options reveal: page far enough to show the selected row and scroll it into view
   */
  render(rows, context, options = {reveal: false}) {
    this.rows = rows;
    this.context = context;
    const selectedIndex = rows.findIndex((row) => isSelected(row.node, context.selected));
    if (options.reveal && selectedIndex >= this.limit) {
      this.limit = Math.ceil((selectedIndex + 1) / PAGE_ROWS) * PAGE_ROWS;
    }
    if (!rows.some((row) => row.node.id === this.focusId)) {
      this.focusId = selectedIndex >= 0 ? rows[selectedIndex].node.id : rows[0]?.node.id ?? null;
    }
    const shown = rows.slice(0, this.limit);
    const wanted = shown.map((row) => this.rowElement(row));
    const keep = new Set(wanted);
    for (const child of [...this.element.children]) {
      if (!keep.has(/** @type {!HTMLElement} */ (child))) {
        child.remove();
      }
    }
    let cursor = this.element.firstElementChild;
    for (const row of wanted) {
      if (row === cursor) {
        cursor = cursor.nextElementSibling;
      } else {
        this.element.insertBefore(row, cursor);
      }
    }
    const cached = new Set(shown.map((row) => row.node.id));
    for (const id of this.cache.keys()) {
      if (!cached.has(id)) {
        this.cache.delete(id);
      }
    }
    const left = rows.length - shown.length;
    this.more.hidden = left <= 0;
    this.more.textContent = `Show ${Math.min(PAGE_ROWS, left)} more (${left} not shown)`;
    this.empty.hidden = rows.length > 0;
    this.empty.textContent = context.empty;
    if (options.reveal && selectedIndex >= 0) {
      this.cache.get(rows[selectedIndex].node.id)?.row.scrollIntoView({block: 'nearest'});
    }
  }

  /**
   * The element of a row: the cached one if its content is unchanged, else a new one.
   * @param {TreeRow} row
   * @return {!HTMLElement}
   */
  rowElement(row) {
    const {node} = row;
    const selected = isSelected(node, this.context.selected);
    const warnings = node.kind === 'run' ? this.context.warnings.get(node.run) || 0 : 0;
    const focus = node.id === this.focusId;
    const key = [node.label, row.depth, row.open, selected, warnings, row.setsize, row.posinset, node.colliding,
      node.children.length, focus].join('\u0000');
    const cached = this.cache.get(node.id);
    if (cached && cached.key === key) {
      return cached.row;
    }
    const element = document.createElement('div');
    element.className = `tree-row kind-${node.kind}${node.colliding > 0 ? ' colliding' : ''}${selected ?
      ' selected' : ''}`;
    element.setAttribute('role', 'treeitem');
    element.setAttribute('aria-level', String(row.depth + 1));
    element.setAttribute('aria-setsize', String(row.setsize));
    element.setAttribute('aria-posinset', String(row.posinset));
    element.setAttribute('data-id', node.id);
    element.tabIndex = focus ? 0 : -1;
    element.style.setProperty('--depth', String(row.depth));
    const twisty = document.createElement('span');
    twisty.className = 'twisty';
    twisty.setAttribute('aria-hidden', 'true');
    if (node.kind === 'tag') {
      element.setAttribute('data-testid', 'tree-leaf');
      element.setAttribute('data-run', node.run);
      element.setAttribute('data-tag', node.tag);
      if (node.lane !== null) {
        element.setAttribute('data-lane', String(node.lane));
      }
      element.setAttribute('aria-selected', String(selected));
      element.title = visible(node.variable ? `${node.tag}\n${node.variable.path}` : node.tag);
    } else {
      element.setAttribute('data-testid', 'tree-node');
      element.setAttribute('data-kind', node.kind);
      element.setAttribute('aria-expanded', String(row.open));
      element.title = visible(node.variable ? node.variable.path : node.path);
    }
    const label = document.createElement('span');
    label.className = 'node-label';
    appendBreakable(label, node.label);
    element.append(twisty, label);
    if (node.variable && node.variable.shape && node.kind !== 'tag') {
      element.append(badge('shape', formatShape(node.variable.shape)));
    }
    if (node.kind === 'tag' && node.colliding) {
      element.append(badge('badge', 'collides'));
    } else if (node.colliding > 0) {
      const count = badge('badge', `⚠ ${node.colliding}`);
      count.title = `${plural(node.colliding, 'colliding tag entry', 'colliding tag entries')} below`;
      element.append(count);
    }
    if (warnings > 0) {
      const flag = badge('badge warning-badge', plural(warnings, 'warning'));
      flag.setAttribute('data-testid', 'tree-run-warnings');
      element.append(flag);
    }
    if (node.kind !== 'tag' && node.children.length === 0) {
      element.append(badge('hint', node.kind === 'run' ? 'no layer groups or colliding tags' : 'no histogram'));
    }
    this.cache.set(node.id, {row: element, key});
    return element;
  }

  /**
   * @param {!MouseEvent} event
   */
  onClick(event) {
    const element = /** @type {?HTMLElement} */ (/** @type {!Element} */ (event.target).closest('.tree-row'));
    const row = element && this.rows.find((r) => r.node.id === element.getAttribute('data-id'));
    if (row) {
      this.focusId = row.node.id;
      this.activate(row);
    }
  }

  /**
   * Enter, a click: a leaf opens its histograms, a branch folds or unfolds.
   * @param {TreeRow} row
   */
  activate(row) {
    const {node} = row;
    if (node.kind === 'tag') {
      this.handlers.onOpen({run: node.run, tag: /** @type {string} */ (node.tag), lane: node.lane});
    } else if (node.children.length > 0) {
      this.handlers.onToggle(node, !row.open);
    }
  }

  /**
   * The keys of the ARIA tree pattern.
   * @param {!KeyboardEvent} event
   */
  onKey(event) {
    const shown = this.rows.slice(0, this.limit);
    const index = shown.findIndex((row) => row.node.id === this.focusId);
    if (index < 0) {
      return;
    }
    const row = shown[index];
    let target = null;
    switch (event.key) {
      case 'ArrowDown':
        target = shown[index + 1];
        break;
      case 'ArrowUp':
        target = shown[index - 1];
        break;
      case 'Home':
        target = shown[0];
        break;
      case 'End':
        target = shown[shown.length - 1];
        break;
      case 'ArrowRight':
        if (row.node.kind !== 'tag' && !row.open && row.node.children.length > 0) {
          this.handlers.onToggle(row.node, true);
        } else if (row.open) {
          target = shown[index + 1];
        }
        break;
      case 'ArrowLeft':
        if (row.open) {
          this.handlers.onToggle(row.node, false);
        } else if (row.parent !== null) {
          target = shown.find((r) => r.node.id === row.parent);
        }
        break;
      case 'Enter':
      case ' ':
        this.activate(row);
        break;
      default:
        return;
    }
    event.preventDefault();
    if (target) {
      this.focus(target.node.id);
    }
  }

  /**
   * Moves the roving tab stop to a row and focuses it.
   * @param {string} id
   */
  focus(id) {
    const previous = this.cache.get(this.focusId || '');
    if (previous) {
      previous.row.tabIndex = -1;
    }
    this.focusId = id;
    const next = this.cache.get(id);
    if (next) {
      next.row.tabIndex = 0;
      next.row.focus();
    }
  }

  /** Whether keyboard focus is inside the tree (a re-render should then keep it on the focused row). */
  hasFocus() {
    return this.element.contains(document.activeElement);
  }

  /** Puts focus back on the focused row after a render replaced it. */
  restoreFocus() {
    this.cache.get(this.focusId || '')?.row.focus();
  }
}

/**
 * @param {string} className
 * @param {string} text
 * @return {!HTMLElement}
 */
function badge(className, text) {
  const element = document.createElement('span');
  element.className = className;
  element.textContent = text;
  return element;
}
