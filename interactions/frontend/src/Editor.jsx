// The canvas editor of an interaction's definition, on the admin's add and change pages.
// It edits the form's own `tasks` textarea (SPEC §2.4, nothing else) and a hidden `layout`
// input; saving submits the admin form, so the server validates exactly as the API does.
import React, { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState } from 'react';
import {
  ReactFlow, ReactFlowProvider, Background, Controls, Handle, Position, BaseEdge, EdgeLabelRenderer,
  getBezierPath, applyNodeChanges, useReactFlow, MarkerType,
} from '@xyflow/react';
import { api, apiList } from './api.js';
import {
  TASK_NAME, autoLayout, deleteTask, edgesOf, expressionProblem, fieldMode, layoutFor, predecessors,
  referenceProblem, renameTask, setLink, splitRef, statusesOf, uniqueName, wouldCycle, ancestors,
} from './definition.js';

const EditorContext = createContext(null);

function errorsFor(errors, prefix) {
  return Object.entries(errors || {})
    .filter(([path]) => path === prefix || path.startsWith(`${prefix}.`))
    .flatMap(([path, messages]) => messages.map((m) => ({ path, message: m })));
}

function TaskNode({ id }) {
  const { tasks, types, errors, selectTask } = useContext(EditorContext);
  const task = tasks[id] || {};
  const problems = errorsFor(errors, `tasks.${id}`);
  const type = types[task.type];
  return (
    <div className={`jc-node${problems.length ? ' jc-node--error' : ''}`} data-testid={`node-${id}`}
         data-has-errors={problems.length ? 'true' : 'false'} onClick={() => selectTask(id)}>
      <Handle type="target" position={Position.Top} data-testid={`handle-in-${id}`} />
      <div className="jc-node__name">{id}</div>
      <div className="jc-node__type">{type ? type.name : task.type}</div>
      {problems.length > 0 && <div className="jc-node__badge" data-testid={`node-errors-${id}`}>{problems.length} error{problems.length > 1 ? 's' : ''}</div>}
      <Handle type="source" position={Position.Bottom} data-testid={`handle-out-${id}`} />
    </div>
  );
}

const CONDITIONS = [
  { label: 'completed', statuses: ['completed'] },
  { label: 'failed', statuses: ['failed'] },
  { label: 'both', statuses: ['completed', 'failed'] },
];

function conditionLabel(statuses) {
  const s = [...statuses].sort();
  return s.length === 2 ? 'completed | failed' : s[0] || '?';
}

function CogEdge({ id, source, target, sourceX, sourceY, targetX, targetY, sourcePosition, targetPosition, markerEnd, data, selected }) {
  const { openCog, setOpenCog, setCondition, removeLink } = useContext(EditorContext);
  const [path, labelX, labelY] = getBezierPath({ sourceX, sourceY, sourcePosition, targetX, targetY, targetPosition });
  const key = `${source}-${target}`;
  const statuses = data.statuses;
  const failed = statuses.includes('failed');
  return (
    <>
      <g data-testid={`edge-${key}`} data-condition={[...statuses].sort().join(',')}>
        <BaseEdge id={id} path={path} markerEnd={markerEnd}
                  style={{ stroke: failed ? '#c0392b' : '#555', strokeWidth: selected ? 2.5 : 1.5, strokeDasharray: failed && !statuses.includes('completed') ? '6 4' : undefined }} />
      </g>
      <EdgeLabelRenderer>
        <div className="jc-edge-label nodrag nopan" style={{ transform: `translate(-50%, -50%) translate(${labelX}px, ${labelY}px)` }}>
          <span className="jc-edge-label__text" data-testid={`edge-label-${key}`}>{conditionLabel(statuses)}</span>
          <button type="button" className="jc-cog" title="Condition of this link" data-testid={`edge-cog-${key}`}
                  onClick={(e) => { e.stopPropagation(); setOpenCog(openCog === key ? null : key); }}>⚙</button>
          {openCog === key && (
            <div className="jc-cog-menu" data-testid={`edge-menu-${key}`}>
              <div className="jc-cog-menu__title">Run {target} when {source} has…</div>
              {CONDITIONS.map((c) => (
                <label key={c.label} className="jc-cog-menu__choice">
                  <input type="radio" name={`cond-${key}`} data-testid={`edge-condition-${key}-${c.label}`}
                         checked={conditionLabel(statuses) === conditionLabel(c.statuses)}
                         onChange={() => { setCondition(source, target, c.statuses); setOpenCog(null); }} />
                  {c.label === 'both' ? 'completed or failed' : c.label}
                </label>
              ))}
              <button type="button" className="jc-link-button jc-danger" data-testid={`edge-delete-${key}`}
                      onClick={() => { removeLink(source, target); setOpenCog(null); }}>Delete link</button>
            </div>
          )}
        </div>
      </EdgeLabelRenderer>
    </>
  );
}

const nodeTypes = { task: TaskNode };
const edgeTypes = { cog: CogEdge };

// One field of the selected task: its mode switch (fixed / blank / reference / …) and input.
function FieldEditor({ taskName, task, spec, tasks, onChange, problems }) {
  const mode = fieldMode(task, spec);
  const value = (task.body || {})[spec.name];
  const id = `${taskName}-${spec.name}`;
  const earlier = [...(ancestors(tasks)[taskName] || [])];
  const setMode = (next) => {
    if (next === 'default') onChange(undefined);
    else if (next === 'blank') onChange(null);
    else if (next === 'reference') onChange({ $ref: earlier[0] || '' });
    else if (next === 'template') onChange({ $template: '' });
    else onChange(spec.default ?? spec.example ?? '');
  };
  const modes = [['fixed', 'fixed value'], ['blank', 'blank (caller fills it)'], ['reference', 'reference to an earlier task']];
  if (!spec.required) modes.unshift(['default', `not set (default ${JSON.stringify(spec.default)})`]);
  if (mode === 'template') modes.push(['template', 'template']);
  return (
    <div className={`jc-field${problems.length ? ' jc-field--error' : ''}`} data-testid={`field-box-${id}`}>
      <div className="jc-field__head">
        <label htmlFor={`jc-${id}`} className="jc-field__name">{spec.name}{spec.required ? ' *' : ''}</label>
        <span className="jc-field__type">{spec.type}</span>
        <select value={mode} data-testid={`field-mode-${id}`} onChange={(e) => setMode(e.target.value)}>
          {modes.map(([m, label]) => <option key={m} value={m}>{label}</option>)}
        </select>
      </div>
      {spec.description && <div className="jc-help">{spec.description}</div>}
      {mode === 'fixed' && <FixedInput id={id} spec={spec} value={value} onChange={onChange} />}
      {mode === 'template' && (
        <input id={`jc-${id}`} data-testid={`field-${id}`} value={value.$template}
               onChange={(e) => onChange({ $template: e.target.value })} />
      )}
      {mode === 'blank' && (
        <div className="jc-help" data-testid={`field-${id}`} data-mode="blank">
          The caller sends it as <code>{`{"${taskName}": {"${spec.name}": …}}`}</code>, e.g. <code>{JSON.stringify(spec.example)}</code>.
        </div>
      )}
      {mode === 'default' && <div className="jc-help" data-testid={`field-${id}`} data-mode="default">Uses the default.</div>}
      {mode === 'reference' && <ReferenceInput id={id} taskName={taskName} tasks={tasks} earlier={earlier} value={value} onChange={onChange} />}
      {problems.map((p, i) => <div key={i} className="jc-error" data-testid={`field-error-${id}`}>{p.message}</div>)}
    </div>
  );
}

function FixedInput({ id, spec, value, onChange }) {
  const simple = ['string', 'expression', 'integer', 'number'].includes(spec.type);
  const toText = (v) => (simple && spec.type !== 'integer' && spec.type !== 'number' ? (typeof v === 'string' ? v : JSON.stringify(v ?? '')) : JSON.stringify(v ?? null, null, 1));
  const [text, setText] = useState(() => (spec.type === 'integer' || spec.type === 'number' ? String(value ?? '') : toText(value)));
  const [problem, setProblem] = useState(null);
  const commit = (raw) => {
    setText(raw);
    if (spec.type === 'string' || spec.type === 'expression') {
      setProblem(spec.type === 'expression' ? expressionProblem(raw) : null);
      onChange(raw);
      return;
    }
    if (spec.type === 'integer' || spec.type === 'number') {
      const n = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(n) || (spec.type === 'integer' && !Number.isInteger(n))) {
        setProblem(`Must be ${spec.type === 'integer' ? 'an integer' : 'a number'}.`);
        return;
      }
      setProblem(null);
      onChange(n);
      return;
    }
    try {
      const parsed = JSON.parse(raw);
      setProblem(null);
      onChange(parsed);
    } catch (e) {
      setProblem('Not valid JSON yet.');
    }
  };
  if (spec.choices) {
    return (
      <select id={`jc-${id}`} data-testid={`field-${id}`} value={JSON.stringify(value)} onChange={(e) => onChange(JSON.parse(e.target.value))}>
        {spec.choices.map((c) => <option key={JSON.stringify(c)} value={JSON.stringify(c)}>{String(c)}</option>)}
      </select>
    );
  }
  if (spec.type === 'boolean') {
    return (
      <select id={`jc-${id}`} data-testid={`field-${id}`} value={String(Boolean(value))} onChange={(e) => onChange(e.target.value === 'true')}>
        <option value="true">true</option><option value="false">false</option>
      </select>
    );
  }
  return (
    <>
      {simple
        ? <input id={`jc-${id}`} data-testid={`field-${id}`} value={text} onChange={(e) => commit(e.target.value)} />
        : <textarea id={`jc-${id}`} data-testid={`field-${id}`} rows={3} value={text} onChange={(e) => commit(e.target.value)} />}
      {problem && <div className="jc-warn" data-testid={`field-check-${id}`}>{problem}</div>}
    </>
  );
}

function ReferenceInput({ id, taskName, tasks, earlier, value, onChange }) {
  const { task, path } = splitRef(value.$ref);
  const set = (t, p) => onChange({ $ref: p ? `${t}.${p}` : t });
  const problem = referenceProblem(tasks, taskName, value.$ref);
  return (
    <div className="jc-ref">
      <select data-testid={`field-ref-task-${id}`} value={task} onChange={(e) => set(e.target.value, path)}>
        <option value="">— earlier task —</option>
        {earlier.map((t) => <option key={t} value={t}>{t}</option>)}
        {task && !earlier.includes(task) && <option value={task}>{task} (not earlier)</option>}
      </select>
      <span>.</span>
      <input id={`jc-${id}`} data-testid={`field-${id}`} placeholder="JMESPath into its output, or error / status (empty: whole output)"
             value={path} onChange={(e) => set(task, e.target.value)} />
      <div className={problem ? 'jc-warn' : 'jc-ok'} data-testid={`field-ref-check-${id}`} data-valid={problem ? 'false' : 'true'}>
        {problem || `✓ ${value.$ref}`}
      </div>
    </div>
  );
}

function SidePanel({ name }) {
  const { tasks, types, integrations, errors, updateTask, rename, remove } = useContext(EditorContext);
  const task = tasks[name];
  const type = types[task.type];
  const [draft, setDraft] = useState(name);
  useEffect(() => setDraft(name), [name]);
  const draftProblem = draft === name ? null : !TASK_NAME.test(draft)
    ? 'Letters, digits and _ only, starting with a letter or _ (at most 64).'
    : draft in tasks ? 'Another task has this name.' : null;
  const commitName = () => { if (draft !== name && !draftProblem) rename(name, draft); };
  const own = errorsFor(errors, `tasks.${name}`);
  const bodyErrors = (field) => own.filter((e) => e.path === `tasks.${name}.body.${field}`);
  const otherErrors = own.filter((e) => !type || !type.fields.some((f) => e.path === `tasks.${name}.body.${f.name}`));
  const setBody = (field, value) => {
    const body = { ...(task.body || {}) };
    if (value === undefined) delete body[field]; else body[field] = value;
    updateTask(name, { ...task, body });
  };
  const setNumber = (key, raw, parse) => {
    const copy = { ...task };
    if (raw === '') delete copy[key]; else copy[key] = parse(raw);
    updateTask(name, copy);
  };
  const options = type && type.provider ? integrations.filter((i) => i.provider === type.provider) : [];
  return (
    <div className="jc-panel" data-testid={`panel-${name}`}>
      <div className="jc-panel__row">
        <label htmlFor="jc-task-name">Task name</label>
        <input id="jc-task-name" data-testid="task-name-input" value={draft} onChange={(e) => setDraft(e.target.value)}
               onBlur={commitName} onKeyDown={(e) => { if (e.key === 'Enter') { e.preventDefault(); commitName(); } }} />
        {draftProblem && <div className="jc-warn">{draftProblem}</div>}
      </div>
      <div className="jc-panel__type">{type ? `${type.name} (${type.type})` : `Unknown type ${task.type}`}</div>
      {type && type.description && <div className="jc-help">{type.description}</div>}
      {otherErrors.length > 0 && (
        <ul className="jc-errors" data-testid={`task-errors-${name}`}>
          {otherErrors.map((e, i) => <li key={i}><code>{e.path.replace(`tasks.${name}`, '') || 'task'}</code> {e.message}</li>)}
        </ul>
      )}
      {type && type.provider && (
        <div className="jc-panel__row">
          <label>Integration ({type.provider})</label>
          <select data-testid={`integration-${name}`} value={task.integration || ''}
                  onChange={(e) => updateTask(name, { ...task, integration: e.target.value || undefined })}>
            <option value="">— choose —</option>
            {options.map((i) => <option key={i.id} value={i.id}>{i.name}</option>)}
          </select>
          {options.length === 0 && <div className="jc-help">No {type.provider} integration yet: add one under Integrations.</div>}
        </div>
      )}
      <h3 className="jc-panel__heading">Fields</h3>
      {type && type.fields.map((spec) => (
        <FieldEditor key={`${name}-${spec.name}-${fieldMode(task, spec)}`} taskName={name} task={task} spec={spec}
                     tasks={tasks} problems={bodyErrors(spec.name)} onChange={(v) => setBody(spec.name, v)} />
      ))}
      <div className="jc-panel__grid">
        <label>Retries
          <input type="number" min="0" data-testid={`retries-${name}`} value={task.retries ?? ''} placeholder="0"
                 onChange={(e) => setNumber('retries', e.target.value, (v) => parseInt(v, 10))} />
        </label>
        <label>Timeout (s)
          <input type="number" min="0" step="any" data-testid={`timeout-${name}`} value={task.timeout ?? ''} placeholder="default"
                 onChange={(e) => setNumber('timeout', e.target.value, Number)} />
        </label>
      </div>
      <button type="button" className="jc-button jc-danger" data-testid={`delete-task-${name}`} onClick={() => remove(name)}>Delete task</button>
    </div>
  );
}

function readTextarea(textarea) {
  try {
    const parsed = JSON.parse(textarea.value || '{}');
    return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? parsed : {};
  } catch (e) {
    return null;
  }
}

function initialNodes(tasks, layout) {
  const positions = layoutFor(tasks, layout);
  return Object.keys(tasks).map((name) => ({ id: name, type: 'task', position: positions[name], data: {} }));
}

function Flow({ config, textarea, form }) {
  const [start] = useState(() => readTextarea(textarea));  // the form's definition as the page came
  const [tasks, setTasks] = useState(start || {});
  const [nodes, setNodes] = useState(() => initialNodes(start || {}, config.layout));
  const [types, setTypes] = useState({});
  const [integrations, setIntegrations] = useState([]);
  const [loadError, setLoadError] = useState(null);
  const errors = config.errors || {};
  const firstErrored = Object.keys(errors).map((p) => p.split('.')[1]).find((n) => n && n in (start || {}));
  const [selected, setSelected] = useState(firstErrored || null);
  const [openCog, setOpenCog] = useState(null);
  const [jsonMode, setJsonMode] = useState(start === null);
  const [jsonError, setJsonError] = useState(start === null ? 'The JSON below does not parse: fix it, then go back to the canvas.' : null);
  const [notice, setNotice] = useState(null);
  const wrapper = useRef(null);
  // Fit the view to a definition that arrives with tasks; an empty canvas keeps its zoom, so
  // a task dropped on it stays where it was dropped.
  const [fitOnLoad] = useState(() => Object.keys(start || {}).length > 0);
  const { screenToFlowPosition, fitView } = useReactFlow();

  useEffect(() => {
    Promise.all([apiList(config.urls.taskTypes), apiList(config.urls.integrations)])
      .then(([taskTypes, ints]) => {
        setTypes(Object.fromEntries(taskTypes.map((t) => [t.type, t])));
        setIntegrations(ints);
      })
      .catch((e) => setLoadError(`Could not load the catalog: ${e.message}`));
  }, []);

  // The form's own inputs always hold what the canvas shows, so any Save button saves it.
  const layout = useMemo(() => Object.fromEntries(nodes.map((n) => [n.id, { x: Math.round(n.position.x), y: Math.round(n.position.y) }])), [nodes]);
  useEffect(() => {
    if (!jsonMode) textarea.value = JSON.stringify(tasks, null, 2);
  }, [tasks, jsonMode]);
  useEffect(() => {
    let input = form.querySelector('input[name=layout]');
    if (!input) {
      input = document.createElement('input');
      input.type = 'hidden';
      input.name = 'layout';
      form.appendChild(input);
    }
    input.value = JSON.stringify(layout);
  }, [layout]);
  useEffect(() => {
    const row = textarea.closest('.form-row') || textarea.parentElement;
    row.style.display = jsonMode ? '' : 'none';
  }, [jsonMode]);

  const edges = useMemo(() => edgesOf(tasks).map(({ source, target, statuses }) => ({
    id: `${source}->${target}`, source, target, type: 'cog', data: { statuses },
    markerEnd: { type: MarkerType.ArrowClosed, width: 18, height: 18 },
  })), [tasks]);

  const updateTask = useCallback((name, task) => setTasks((t) => ({ ...t, [name]: task })), []);
  const rename = useCallback((from, to) => {
    setTasks((t) => renameTask(t, from, to));
    setNodes((ns) => ns.map((n) => (n.id === from ? { ...n, id: to } : n)));
    setSelected(to);
  }, []);
  const remove = useCallback((name) => {
    setTasks((t) => deleteTask(t, name));
    setNodes((ns) => ns.filter((n) => n.id !== name));
    setSelected(null);
  }, []);
  const setCondition = useCallback((source, target, statuses) => setTasks((t) => setLink(t, source, target, statuses)), []);
  const removeLink = useCallback((source, target) => setTasks((t) => setLink(t, source, target, null)), []);

  const tasksRef = useRef(tasks);
  tasksRef.current = tasks;
  const addTask = useCallback((type, position) => {
    const name = uniqueName(tasksRef.current, type);
    setTasks((t) => ({ ...t, [name]: { type, body: {} } }));
    setNodes((ns) => [...ns, { id: name, type: 'task', position, data: {} }]);
    setSelected(name);
  }, []);

  const onNodesChange = useCallback((changes) => {
    const removed = changes.filter((c) => c.type === 'remove').map((c) => c.id);
    if (removed.length) removed.forEach((id) => setTasks((t) => deleteTask(t, id)));
    setNodes((ns) => applyNodeChanges(changes, ns));
  }, []);
  const onEdgesChange = useCallback((changes) => {
    for (const c of changes) {
      if (c.type === 'remove') {
        const [source, target] = c.id.split('->');
        removeLink(source, target);
      }
    }
  }, []);
  const isValidConnection = useCallback((c) => !wouldCycle(tasks, c.source, c.target)
    && !(c.source in predecessors(tasks[c.target])), [tasks]);
  const onConnect = useCallback((c) => {
    if (wouldCycle(tasks, c.source, c.target)) {
      setNotice(`Refused: ${c.source} → ${c.target} would make a cycle.`);
      return;
    }
    setNotice(null);
    setCondition(c.source, c.target, ['completed']);
  }, [tasks]);

  const onDragOver = useCallback((e) => { e.preventDefault(); e.dataTransfer.dropEffect = 'move'; }, []);
  const onDrop = useCallback((e) => {
    e.preventDefault();
    const type = e.dataTransfer.getData('application/x-junction-task-type');
    if (!type) return;
    const p = screenToFlowPosition({ x: e.clientX, y: e.clientY });
    addTask(type, { x: Math.round(p.x - 95), y: Math.round(p.y - 32) });
  }, [screenToFlowPosition, addTask]);

  const relayout = () => {
    const positions = autoLayout(tasks);
    setNodes((ns) => ns.map((n) => ({ ...n, position: positions[n.id] || n.position })));
    setTimeout(() => fitView({ padding: 0.2 }), 50);
  };
  const toggleJson = () => {
    if (!jsonMode) {
      textarea.value = JSON.stringify(tasks, null, 2);
      setJsonMode(true);
      return;
    }
    const parsed = readTextarea(textarea);
    if (parsed === null) { setJsonError('The JSON does not parse: fix it first.'); return; }
    setJsonError(null);
    setTasks(parsed);
    setNodes((ns) => {
      const known = Object.fromEntries(ns.map((n) => [n.id, n.position]));
      return initialNodes(parsed, known);
    });
    setSelected(null);
    setJsonMode(false);
  };
  const save = () => {
    if (jsonMode && readTextarea(textarea) === null) { setJsonError('The JSON does not parse: fix it first.'); return; }
    if (!jsonMode) textarea.value = JSON.stringify(tasks, null, 2);
    const input = document.createElement('input');
    input.type = 'hidden';
    input.name = '_continue';
    input.value = '1';
    form.appendChild(input);
    form.submit();
  };

  const context = {
    tasks, types, integrations, errors, openCog, setOpenCog, setCondition, removeLink, updateTask, rename, remove,
    selectTask: (n) => { setSelected(n); setOpenCog(null); },
  };
  const globalErrors = Object.entries(errors).filter(([p]) => !p.startsWith('tasks.') || !(p.split('.')[1] in tasks));
  const typeList = Object.values(types);

  return (
    <EditorContext.Provider value={context}>
      <div className="jc-editor" data-testid="canvas" data-mode={jsonMode ? 'json' : 'canvas'}>
        <div className="jc-toolbar">
          <strong>Definition</strong>
          <span className="jc-toolbar__hint">Drag a task type onto the canvas, drag from a task's bottom dot to another task to link them, click ⚙ on a link to set its condition.</span>
          <span className="jc-spacer" />
          {!jsonMode && <button type="button" className="jc-button" data-testid="auto-layout" onClick={relayout}>Auto layout</button>}
          <button type="button" className="jc-button" data-testid="toggle-json" onClick={toggleJson}>{jsonMode ? 'Back to the canvas' : 'Edit as JSON'}</button>
          <button type="button" className="jc-button jc-primary" data-testid="save" onClick={save}>Save</button>
        </div>
        {loadError && <div className="jc-error">{loadError}</div>}
        {jsonError && <div className="jc-error" data-testid="json-error">{jsonError}</div>}
        {notice && <div className="jc-warn" data-testid="canvas-notice">{notice}</div>}
        {globalErrors.length > 0 && (
          <ul className="jc-errors" data-testid="canvas-errors">
            {globalErrors.map(([p, ms]) => ms.map((m, i) => <li key={`${p}-${i}`}><code>{p}</code> {m}</li>))}
          </ul>
        )}
        {!jsonMode && (
          <div className="jc-body">
            <div className="jc-palette" data-testid="palette">
              <div className="jc-palette__title">Tasks</div>
              {typeList.map((t) => (
                <div key={t.type} className="jc-palette__item" draggable data-testid={`palette-${t.type}`} title={t.description}
                     onDragStart={(e) => { e.dataTransfer.setData('application/x-junction-task-type', t.type); e.dataTransfer.effectAllowed = 'move'; }}
                     onDoubleClick={() => addTask(t.type, { x: 40 + 30 * Object.keys(tasks).length, y: 40 + 30 * Object.keys(tasks).length })}>
                  <div className="jc-palette__name">{t.name}</div>
                  <div className="jc-palette__key">{t.type}{t.provider ? ` · ${t.provider}` : ''}</div>
                </div>
              ))}
            </div>
            <div className="jc-flow" ref={wrapper} data-testid="canvas-flow" onDragOver={onDragOver} onDrop={onDrop}>
              <ReactFlow nodes={nodes} edges={edges} nodeTypes={nodeTypes} edgeTypes={edgeTypes}
                         onNodesChange={onNodesChange} onEdgesChange={onEdgesChange} onConnect={onConnect}
                         isValidConnection={isValidConnection} onPaneClick={() => { setSelected(null); setOpenCog(null); }}
                         onNodeClick={(e, n) => context.selectTask(n.id)} deleteKeyCode={['Delete']}
                         fitView={fitOnLoad} fitViewOptions={{ padding: 0.2, maxZoom: 1 }} proOptions={{ hideAttribution: true }}>
                <Background gap={16} />
                <Controls showInteractive={false} />
              </ReactFlow>
            </div>
            <div className="jc-side" data-testid="side-panel">
              {selected && tasks[selected]
                ? <SidePanel name={selected} />
                : <div className="jc-help">Select a task to edit its fields. {Object.keys(tasks).length === 0 && 'Start by dragging a task type from the left.'}</div>}
            </div>
          </div>
        )}
      </div>
    </EditorContext.Provider>
  );
}

export default function Editor({ config, textarea, form }) {
  return (
    <ReactFlowProvider>
      <Flow config={config} textarea={textarea} form={form} />
    </ReactFlowProvider>
  );
}
