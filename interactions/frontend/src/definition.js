// Pure helpers over SPEC §2.4's definition ({task: {type, integration, body, execute_after,
// retries, timeout}}): the graph it draws, the cycle check, renames, field modes, layout.
import dagre from '@dagrejs/dagre';
import jmespath from 'jmespath';

export const TASK_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
export const NODE_WIDTH = 190;
export const NODE_HEIGHT = 64;

export function predecessors(task) {
  const after = task && task.execute_after;
  return after && typeof after === 'object' && !Array.isArray(after) ? after : {};
}

export function statusesOf(value) {
  return Array.isArray(value) ? value : typeof value === 'string' ? [value] : [];
}

export function edgesOf(tasks) {
  const edges = [];
  for (const [target, task] of Object.entries(tasks)) {
    for (const [source, statuses] of Object.entries(predecessors(task))) {
      if (source in tasks) edges.push({ source, target, statuses: statusesOf(statuses) });
    }
  }
  return edges;
}

// name -> Set of every task it (transitively) waits for.
export function ancestors(tasks) {
  const memo = {};
  const visit = (name, trail) => {
    if (memo[name]) return memo[name];
    const found = new Set();
    for (const pred of Object.keys(predecessors(tasks[name]))) {
      if (!(pred in tasks) || trail.has(pred)) continue;
      found.add(pred);
      for (const a of visit(pred, new Set([...trail, pred]))) found.add(a);
    }
    memo[name] = found;
    return found;
  };
  for (const name of Object.keys(tasks)) visit(name, new Set([name]));
  return memo;
}

// A link source -> target is refused when it would close a cycle (target already runs before source).
export function wouldCycle(tasks, source, target) {
  if (source === target) return true;
  return ancestors(tasks)[source]?.has(target) || false;
}

export function uniqueName(tasks, base) {
  const stem = base.replace(/[^A-Za-z0-9_]/g, '_').replace(/^[^A-Za-z_]/, '_');
  for (let i = 1; ; i += 1) {
    const name = `${stem}_${i}`;
    if (!(name in tasks)) return name;
  }
}

function renameRefs(value, from, to) {
  if (Array.isArray(value)) return value.map((v) => renameRefs(v, from, to));
  if (value && typeof value === 'object') {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === '$ref' && typeof value.$ref === 'string') {
      const ref = value.$ref;
      if (ref === from || ref.startsWith(`${from}.`)) return { $ref: to + ref.slice(from.length) };
      return value;
    }
    if (keys.length === 1 && keys[0] === '$template' && typeof value.$template === 'string') {
      return { $template: value.$template.replace(/\{\{\s*(.*?)\s*\}\}/g, (whole, ref) => (
        ref === from || ref.startsWith(`${from}.`) ? `{{ ${to}${ref.slice(from.length)} }}` : whole)) };
    }
    return Object.fromEntries(keys.map((k) => [k, renameRefs(value[k], from, to)]));
  }
  return value;
}

// Rename a task everywhere: its key (order kept), the links to it and references to it.
export function renameTask(tasks, from, to) {
  const out = {};
  for (const [name, task] of Object.entries(tasks)) {
    const copy = { ...task };
    if (task.execute_after && typeof task.execute_after === 'object') {
      copy.execute_after = Object.fromEntries(
        Object.entries(task.execute_after).map(([p, s]) => [p === from ? to : p, s]));
    }
    if (task.body && typeof task.body === 'object') copy.body = renameRefs(task.body, from, to);
    out[name === from ? to : name] = copy;
  }
  return out;
}

export function deleteTask(tasks, name) {
  const out = {};
  for (const [other, task] of Object.entries(tasks)) {
    if (other === name) continue;
    const after = { ...predecessors(task) };
    if (name in after) {
      delete after[name];
      const copy = { ...task };
      if (Object.keys(after).length) copy.execute_after = after; else delete copy.execute_after;
      out[other] = copy;
    } else {
      out[other] = task;
    }
  }
  return out;
}

export function setLink(tasks, source, target, statuses) {
  if (!(target in tasks)) return tasks;  // a link removed along with its task
  const task = { ...tasks[target] };
  const after = { ...predecessors(task) };
  if (statuses && statuses.length) after[source] = statuses; else delete after[source];
  if (Object.keys(after).length) task.execute_after = after; else delete task.execute_after;
  return { ...tasks, [target]: task };
}

// How a field's value is given: left out (the type's default), fixed, blank, reference, template.
export function fieldMode(task, spec) {
  const body = task.body && typeof task.body === 'object' ? task.body : {};
  if (!(spec.name in body)) return spec.required ? 'blank' : 'default';
  const value = body[spec.name];
  if (value === null) return 'blank';
  if (value && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length === 1) {
    if ('$ref' in value) return 'reference';
    if ('$template' in value) return 'template';
  }
  return 'fixed';
}

export function splitRef(ref) {
  const text = typeof ref === 'string' ? ref.trim() : '';
  const dot = text.indexOf('.');
  return dot < 0 ? { task: text, path: '' } : { task: text.slice(0, dot), path: text.slice(dot + 1) };
}

// The problem with a reference, as the server would name it, or null when it is fine.
export function referenceProblem(tasks, taskName, ref) {
  const { task, path } = splitRef(ref);
  if (!task) return 'Pick an earlier task.';
  if (!(task in tasks)) return `No task named ${task}.`;
  if (!ancestors(tasks)[taskName]?.has(task)) {
    return `${task} is not an ancestor of ${taskName}: link it first (directly or through another task).`;
  }
  if (path) {
    try { jmespath.compile(path); } catch (e) { return `Invalid JMESPath: ${e.message}`; }
  }
  return null;
}

export function expressionProblem(text) {
  if (typeof text !== 'string' || !text.trim()) return 'Required.';
  try { jmespath.compile(text); return null; } catch (e) { return `Invalid JMESPath: ${e.message}`; }
}

// Positions for tasks without one: a layered (Sugiyama) layout from dagre, top to bottom.
export function autoLayout(tasks) {
  const graph = new dagre.graphlib.Graph();
  graph.setGraph({ rankdir: 'TB', nodesep: 50, ranksep: 70, marginx: 20, marginy: 20 });
  graph.setDefaultEdgeLabel(() => ({}));
  for (const name of Object.keys(tasks)) graph.setNode(name, { width: NODE_WIDTH, height: NODE_HEIGHT });
  for (const { source, target } of edgesOf(tasks)) graph.setEdge(source, target);
  dagre.layout(graph);
  const positions = {};
  for (const name of Object.keys(tasks)) {
    const node = graph.node(name);
    positions[name] = { x: Math.round(node.x - NODE_WIDTH / 2), y: Math.round(node.y - NODE_HEIGHT / 2) };
  }
  return positions;
}

export function layoutFor(tasks, layout) {
  const given = layout && typeof layout === 'object' ? layout : {};
  const complete = Object.keys(tasks).every((name) => given[name] && Number.isFinite(given[name].x));
  if (complete) return given;
  const auto = autoLayout(tasks);
  return Object.fromEntries(Object.keys(tasks).map((n) => [n, given[n] && Number.isFinite(given[n].x) ? given[n] : auto[n]]));
}

// A task's body as the engine resolves it (interactions/engine/execution.py resolve_body):
// literals, then the caller's input for blanks, then references into earlier tasks' records.
function lookup(ref, records) {
  const { task, path } = splitRef(ref);
  const record = records[task];
  if (!record) return null;
  if (path === 'error') return record.error ?? null;
  if (path === 'status') return record.status ?? null;
  if (!path) return record.output ?? null;
  try { return jmespath.search(record.output ?? null, path); } catch (e) { return null; }
}

function resolveValue(value, records) {
  if (Array.isArray(value)) return value.map((v) => resolveValue(v, records));
  if (value && typeof value === 'object') {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === '$ref') return lookup(value.$ref, records);
    if (keys.length === 1 && keys[0] === '$template') {
      return String(value.$template).replace(/\{\{\s*(.*?)\s*\}\}/g, (w, ref) => {
        const found = lookup(ref, records);
        return found === null || found === undefined ? '' : typeof found === 'string' ? found : JSON.stringify(found);
      });
    }
    return Object.fromEntries(keys.map((k) => [k, resolveValue(value[k], records)]));
  }
  return value;
}

export function resolvedInput(task, name, sessionInput, records) {
  const body = task && task.body && typeof task.body === 'object' ? task.body : {};
  const given = (sessionInput && sessionInput[name]) || {};
  const out = {};
  for (const [field, value] of Object.entries(body)) {
    if (value !== null) out[field] = resolveValue(value, records);
  }
  for (const [field, value] of Object.entries(given)) {
    if (!(field in out) || body[field] === null) out[field] = value;
  }
  return out;
}
