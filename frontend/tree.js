// The variable tree: run -> layer scopes -> variable -> histogram tag (+ lane), and its regex filter.

/**
 * @typedef {import('./overview.js').Report} Report
 * @typedef {import('./overview.js').RunReport} RunReport
 * @typedef {import('./overview.js').GroupVariable} GroupVariable
 *
 * A node of the tree. `kind` is 'run', 'scope' (a layer scope or a tag prefix), 'variable' or 'tag'.
 * `tag` and `lane` say which histograms a click opens (lane null: every lane of the tag).
 * `colliding` counts the colliding tag entries at or below the node.
 * @typedef {{id: string, kind: string, label: string, run: string, path: string,
 *            tag: ?string, lane: ?number, variable: ?GroupVariable,
 *            colliding: number, children: !Array<TreeNode>}} TreeNode
 *
 * @typedef {{regex: ?RegExp, error: ?string}} TagFilter
 */

/**
 * Splits a variable path or tag into tree levels on `/` and `.` ("layer1.0.conv1" -> 3 levels).
 * @param {string} path
 * @return {!Array<string>}
 */
export function splitPath(path) {
  return path.split(/[/.]/).filter((part) => part !== '');
}

/**
 * Builds one tree per run from the report's layer groups. Variables sit under their scope path;
 * tags no variable claims sit under their group, and colliding tags no group mentions sit under
 * the run, both split like paths.
 * @param {Report} report
 * @return {!Array<TreeNode>}
 */
export function buildTree(report) {
  return report.runs.map(buildRunTree);
}

/**
 * @param {RunReport} runReport
 * @return {TreeNode}
 */
function buildRunTree(runReport) {
  const run = runReport.run;
  const collidingTags = new Set(runReport.collisions.map((c) => c.tag));
  const root = makeNode('run', run, run, []);
  const placedTags = new Set();

  for (const group of runReport.groups) {
    const claimed = new Set();
    for (const variable of group.variables) {
      const node = ensurePath(root, splitPath(variable.path), 'scope');
      node.kind = 'variable';
      node.variable = variable;
      if (variable.tag !== null) {
        claimed.add(variable.tag);
        placedTags.add(variable.tag);
        const lane = collidingTags.has(variable.tag) ? variable.lane : null;
        const label = lane === null ? variable.tag : `${variable.tag} · lane ${lane}`;
        const leaf = makeNode('tag', run, `${variable.path}\u0000${label}`, []);
        Object.assign(leaf, {label, tag: variable.tag, lane, variable});
        leaf.colliding = collidingTags.has(variable.tag) ? 1 : 0;
        node.children.push(leaf);
      }
    }
    const groupSegments = splitPath(group.path);
    for (const tag of group.tags) {
      if (!claimed.has(tag)) {
        placedTags.add(tag);
        addTagLeaf(root, [...groupSegments, ...withoutPrefix(splitPath(tag), groupSegments)], tag,
          collidingTags.has(tag));
      }
    }
  }
  for (const tag of collidingTags) {
    if (!placedTags.has(tag)) {
      addTagLeaf(root, splitPath(tag), tag, true);
    }
  }
  finish(root);
  return root;
}

/**
 * Drops `prefix` from the front of `segments` when it is there ("dense/kernel_0" in group "dense").
 * @param {!Array<string>} segments
 * @param {!Array<string>} prefix
 * @return {!Array<string>}
 */
function withoutPrefix(segments, prefix) {
  const starts = prefix.length < segments.length && prefix.every((part, i) => segments[i] === part);
  return starts ? segments.slice(prefix.length) : segments;
}

/**
 * @param {TreeNode} root
 * @param {!Array<string>} segments path of the tag, its last segment being the leaf
 * @param {string} tag
 * @param {boolean} colliding
 */
function addTagLeaf(root, segments, tag, colliding) {
  const parts = segments.length > 0 ? segments : [tag];
  const parent = ensurePath(root, parts.slice(0, -1), 'scope');
  const leaf = makeNode('tag', root.run, `${parent.path}\u0000${tag}`, []);
  Object.assign(leaf, {label: parts[parts.length - 1], tag, colliding: colliding ? 1 : 0});
  parent.children.push(leaf);
}

/**
 * Walks down from `root` along `segments`, creating the nodes that are missing.
 * @param {TreeNode} root
 * @param {!Array<string>} segments
 * @param {string} kind kind given to created nodes
 * @return {TreeNode}
 */
function ensurePath(root, segments, kind) {
  let node = root;
  for (const segment of segments) {
    const path = node.kind === 'run' ? segment : `${node.path}/${segment}`;
    // A lookup per level keeps building linear in the tags: wide scopes (10,000 tags under one run) made the
    // scan of the children quadratic.
    const scopes = branchesOf(node);
    let child = scopes.get(path);
    if (!child) {
      child = makeNode(kind, root.run, path, []);
      child.label = segment;
      node.children.push(child);
      scopes.set(path, child);
    }
    node = child;
  }
  return node;
}

// One collator for every comparison: String.localeCompare with options builds one per call (600 ms at 10,000 tags).
const NATURAL = new Intl.Collator('en', {numeric: true});

/** @type {!WeakMap<TreeNode, !Map<string, TreeNode>>} the non-tag children of a node by path, while building */
const BRANCHES = new WeakMap();

/**
 * @param {TreeNode} node
 * @return {!Map<string, TreeNode>}
 */
function branchesOf(node) {
  let branches = BRANCHES.get(node);
  if (!branches) {
    branches = new Map();
    BRANCHES.set(node, branches);
  }
  return branches;
}

/**
 * @param {string} kind
 * @param {string} run
 * @param {string} path
 * @param {!Array<TreeNode>} children
 * @return {TreeNode}
 */
function makeNode(kind, run, path, children) {
  return {
    id: `${run}\u0000${path}`,
    kind,
    label: path,
    run,
    path,
    tag: null,
    lane: null,
    variable: null,
    colliding: 0,
    children,
  };
}

/**
 * Sorts children naturally (my_layer, my_layer_1, my_layer_2, my_layer_10) and sums collisions upward.
 * @param {TreeNode} node
 * @return {number}
 */
function finish(node) {
  node.children.sort((a, b) => NATURAL.compare(a.label, b.label));
  for (const child of node.children) {
    node.colliding += finish(child);
  }
  return node.colliding;
}

/**
 * Compiles the filter text like TensorBoard's tag filter: a case-insensitive regular expression.
 * Empty text filters nothing; invalid text filters nothing and reports why.
 * @param {string} text
 * @return {TagFilter}
 */
export function compileFilter(text) {
  if (text === '') {
    return {regex: null, error: null};
  }
  try {
    return {regex: new RegExp(text, 'i'), error: null};
  } catch (error) {
    return {regex: null, error: error instanceof Error ? error.message : String(error)};
  }
}

/**
 * Keeps the tag entries and variables whose tag or variable path matches, with their ancestors.
 * Returns the trees unchanged when `regex` is null.
 * @param {!Array<TreeNode>} roots
 * @param {?RegExp} regex
 * @return {!Array<TreeNode>}
 */
export function filterTree(roots, regex) {
  if (regex === null) {
    return roots;
  }
  return roots.map((root) => filterNode(root, regex)).filter((node) => node !== null);
}

/**
 * @param {TreeNode} node
 * @param {!RegExp} regex
 * @return {?TreeNode}
 */
function filterNode(node, regex) {
  if (matches(node, regex)) {
    return node;
  }
  // Plain loops: at 10,000 tags the intermediate arrays of map/filter were most of a keystroke's cost.
  const children = [];
  let colliding = 0;
  for (const child of node.children) {
    const kept = filterNode(child, regex);
    if (kept !== null) {
      children.push(kept);
      colliding += kept.colliding;
    }
  }
  if (children.length === 0) {
    return null;
  }
  return {...node, children, colliding};
}

/**
 * @param {TreeNode} node
 * @param {!RegExp} regex
 * @return {boolean}
 */
function matches(node, regex) {
  if (node.kind === 'tag') {
    return regex.test(node.tag) || (node.variable !== null && regex.test(node.variable.path));
  }
  return node.kind === 'variable' && regex.test(node.variable.path);
}

/**
 * Keeps only the colliding tag entries and their ancestors.
 * @param {!Array<TreeNode>} roots
 * @return {!Array<TreeNode>}
 */
export function collidingOnly(roots) {
  const keep = (node) => {
    if (node.kind === 'tag') {
      return node.colliding > 0 ? node : null;
    }
    if (node.colliding === 0) {
      return null;
    }
    const children = node.children.map(keep).filter((child) => child !== null);
    return {...node, children};
  };
  return roots.map(keep).filter((node) => node !== null);
}

/**
 * Counts the histogram tags in the trees, each (run, tag) once however many lanes it has: the number the header
 * counts.
 * @param {!Array<TreeNode>} roots
 * @return {number}
 */
export function countTags(roots) {
  let count = 0;
  for (const root of roots) {
    // Lanes of one tag sit under different variables: one set of tags per run counts each once.
    const tags = new Set();
    const walk = (node) => {
      if (node.kind === 'tag') {
        tags.add(node.tag);
      } else {
        for (const child of node.children) {
          walk(child);
        }
      }
    };
    walk(root);
    count += tags.size;
  }
  return count;
}

/**
 * @typedef {{node: TreeNode, depth: number, open: boolean, setsize: number, posinset: number,
 *            parent: ?string}} TreeRow
 */

/**
 * The rows the tree shows, top to bottom: every node whose ancestors are all open. Only these are ever made into
 * DOM elements (and only a page of them at a time).
 * @param {!Array<TreeNode>} roots
 * @param {function(TreeNode, number): boolean} isOpen whether a node at a depth shows its children
 * @return {!Array<TreeRow>}
 */
export function visibleRows(roots, isOpen) {
  const rows = [];
  const walk = (nodes, depth, parent) => {
    nodes.forEach((node, i) => {
      const open = node.kind !== 'tag' && isOpen(node, depth);
      rows.push({node, depth, open, setsize: nodes.length, posinset: i + 1, parent});
      if (open) {
        walk(node.children, depth + 1, node.id);
      }
    });
  };
  walk(roots, 0, null);
  return rows;
}

/**
 * Ids of the nodes above the first tag entry `wanted` accepts, so that entry can be shown.
 * @param {!Array<TreeNode>} roots
 * @param {function(TreeNode): boolean} wanted
 * @return {!Array<string>}
 */
export function pathTo(roots, wanted) {
  const trail = [];
  const walk = (node) => {
    if (node.kind === 'tag') {
      return wanted(node);
    }
    trail.push(node.id);
    if (node.children.some(walk)) {
      return true;
    }
    trail.pop();
    return false;
  };
  roots.some(walk);
  return trail;
}
