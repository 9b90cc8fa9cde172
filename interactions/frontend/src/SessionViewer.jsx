// The session viewer: the version's DAG coloured by task status, a millisecond timeline
// (Gantt) of the tasks, each task's resolved input, output, error and attempts, cancel and
// retry. Live through the API's Server-Sent Events, with the admin's session cookie.
import React, { useEffect, useMemo, useRef, useState } from 'react';
import { ReactFlow, ReactFlowProvider, Background, Handle, Position, MarkerType } from '@xyflow/react';
import { api, withId } from './api.js';
import { edgesOf, layoutFor, resolvedInput } from './definition.js';

const FINISHED = ['completed', 'failed', 'cancelled', 'timed_out'];

function StatusNode({ id, data }) {
  return (
    <div className={`jc-node jc-status--${data.status}`} data-testid={`session-task-${id}`} data-status={data.status}>
      <Handle type="target" position={Position.Top} isConnectable={false} />
      <div className="jc-node__name">{id}</div>
      <div className="jc-node__type">{data.status}{data.duration != null ? ` · ${data.duration} ms` : ''}</div>
      <Handle type="source" position={Position.Bottom} isConnectable={false} />
    </div>
  );
}
const nodeTypes = { status: StatusNode };

// An ISO time in ms since the epoch, keeping the microseconds the API gives as a fraction.
function ms(iso) {
  if (!iso) return null;
  const fraction = iso.match(/\.(\d+)/);
  const extra = fraction && fraction[1].length > 3 ? Number(`0.${fraction[1].slice(3)}`) : 0;
  return Date.parse(iso) + extra;
}

// start/end of each task in ms from the session's first start; running tasks end "now".
export function timelineOf(session, now) {
  // In the order the tasks started; those that never started last.
  const rows = Object.entries(session.tasks || {})
    .map(([name, t]) => ({ name, status: t.status, start: ms(t.started_at), end: ms(t.finished_at) }))
    .sort((a, b) => (a.start ?? Infinity) - (b.start ?? Infinity) || a.name.localeCompare(b.name));
  const started = rows.filter((r) => r.start != null);
  if (!started.length) return { rows, origin: null, span: 0 };
  const origin = Math.min(...started.map((r) => r.start), ms(session.started_at) ?? Infinity);
  const last = Math.max(...started.map((r) => r.end ?? now));
  return { rows, origin, span: Math.max(last - origin, 1) };
}

function Timeline({ session }) {
  const [now, setNow] = useState(Date.now());
  const live = !FINISHED.includes(session.status);
  useEffect(() => {
    if (!live) return undefined;
    const timer = setInterval(() => setNow(Date.now()), 100);
    return () => clearInterval(timer);
  }, [live]);
  const { rows, origin, span } = timelineOf(session, now);
  const ticks = origin == null ? [] : [0, 0.25, 0.5, 0.75, 1].map((f) => Math.round(f * span));
  return (
    <div className="jc-timeline" data-testid="timeline" data-span-ms={Math.round(span)}>
      <div className="jc-timeline__axis">
        <div className="jc-timeline__label" />
        <div className="jc-timeline__track">
          {ticks.map((t) => <span key={t} className="jc-timeline__tick" style={{ left: `${(t / span) * 100}%` }}>{t} ms</span>)}
        </div>
      </div>
      {rows.map((r) => {
        const has = origin != null && r.start != null;
        const start = has ? r.start - origin : 0;
        const end = has ? (r.end ?? now) - origin : 0;
        return (
          <div key={r.name} className="jc-timeline__row">
            <div className="jc-timeline__label">{r.name}</div>
            <div className="jc-timeline__track">
              {has && (
                <div className={`jc-timeline__bar jc-status--${r.status}`} data-testid={`timeline-bar-${r.name}`}
                     data-start-ms={start.toFixed(3)} data-end-ms={end.toFixed(3)}
                     title={`${r.name}: ${start.toFixed(1)} → ${end.toFixed(1)} ms (${(end - start).toFixed(1)} ms)`}
                     style={{ left: `${(start / span) * 100}%`, width: `max(2px, ${((end - start) / span) * 100}%)` }} />
              )}
              {!has && <span className="jc-help">{r.status}</span>}
            </div>
          </div>
        );
      })}
    </div>
  );
}

function TaskDetails({ name, task, record, session }) {
  const records = session.tasks || {};
  const input = resolvedInput(task, name, session.input, records);
  return (
    <details className="jc-task-detail" data-testid={`session-detail-${name}`}>
      <summary>
        <span className={`jc-pill jc-status--${record.status}`}>{record.status}</span> <strong>{name}</strong>
        {' '}({task ? task.type : '?'}) · attempts {record.attempts} · {record.duration_ms ?? '–'} ms
      </summary>
      <div className="jc-task-detail__grid">
        <div><h4>Input (resolved)</h4><pre data-testid={`session-input-${name}`}>{JSON.stringify(input, null, 2)}</pre></div>
        <div><h4>Output</h4><pre data-testid={`session-output-${name}`}>{JSON.stringify(record.output, null, 2)}</pre></div>
      </div>
      {record.error && <div className="jc-error" data-testid={`session-error-${name}`}>{record.error}</div>}
      {record.logs && <div><h4>Logs</h4><pre>{record.logs}</pre></div>}
      <div className="jc-help">started {record.started_at || '–'} · finished {record.finished_at || '–'}</div>
    </details>
  );
}

export function SessionView({ sessionId, tasks, layout, urls, compact }) {
  const [session, setSession] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const url = (key) => withId(urls[key], urls.placeholder, sessionId);
  const refresh = useRef(null);

  useEffect(() => {
    let closed = false;
    let source = null;
    const load = () => api(url('session')).then((s) => { if (!closed) setSession(s); return s; });
    refresh.current = load;
    load().then((s) => {
      if (closed || FINISHED.includes(s.status)) return;
      source = new EventSource(url('sessionEvents'));
      source.addEventListener('task', (e) => {
        const change = JSON.parse(e.data);
        setSession((prev) => prev && ({ ...prev, status: prev.status === 'queued' ? 'running' : prev.status,
          tasks: { ...prev.tasks, [change.name]: { ...prev.tasks[change.name], ...change } } }));
      });
      source.addEventListener('session', (e) => {
        const data = JSON.parse(e.data);
        setSession(data);
        if (FINISHED.includes(data.status)) source.close();
      });
      source.onerror = () => { if (source.readyState === EventSource.CLOSED) load().catch(() => {}); };
    }).catch((e) => setError(e.message));
    return () => { closed = true; if (source) source.close(); };
  }, [sessionId]);

  const positions = useMemo(() => layoutFor(tasks, layout), [tasks, layout]);
  const nodes = useMemo(() => Object.keys(tasks).map((name) => {
    const record = (session && session.tasks[name]) || { status: 'pending' };
    return { id: name, type: 'status', position: positions[name], data: { status: record.status, duration: record.duration_ms }, draggable: false, connectable: false };
  }), [tasks, positions, session]);
  const edges = useMemo(() => edgesOf(tasks).map(({ source, target, statuses }) => ({
    id: `${source}->${target}`, source, target, label: statuses.join(' | '),
    markerEnd: { type: MarkerType.ArrowClosed }, style: statuses.includes('failed') ? { stroke: '#c0392b' } : undefined,
  })), [tasks]);

  const act = async (kind) => {
    setBusy(true);
    setError(null);
    try {
      const answer = await api(url(kind === 'cancel' ? 'sessionCancel' : 'sessionRetry'), { method: 'POST' });
      if (kind === 'retry') window.location.assign(withId(urls.sessionAdmin, urls.placeholder, answer.id));
      else await refresh.current();
    } catch (e) {
      setError(e.message);
    } finally {
      setBusy(false);
    }
  };

  if (error && !session) return <div className="jc-error">{error}</div>;
  if (!session) return <div className="jc-help">Loading the session…</div>;
  const finished = FINISHED.includes(session.status);
  return (
    <div className="jc-session" data-testid="session-viewer" data-session-id={session.id} data-status={session.status}>
      <div className="jc-toolbar">
        <strong>Session</strong>
        <span className={`jc-pill jc-status--${session.status}`} data-testid="session-status">{session.status}</span>
        <span className="jc-help">v{session.version} · {session.duration_ms ?? '–'} ms</span>
        {compact && <a href={withId(urls.sessionAdmin, urls.placeholder, session.id)} data-testid="open-session">Open the session page</a>}
        <span className="jc-spacer" />
        {!finished && <button type="button" className="jc-button jc-danger" data-testid="cancel-button" disabled={busy} onClick={() => act('cancel')}>Cancel</button>}
        {finished && <button type="button" className="jc-button" data-testid="retry-button" disabled={busy} onClick={() => act('retry')}>Retry</button>}
      </div>
      {error && <div className="jc-error">{error}</div>}
      {session.error && <div className="jc-error" data-testid="session-error">{session.error}</div>}
      <div className="jc-session__dag" data-testid="session-dag" style={{ height: compact ? 260 : 360 }}>
        <ReactFlowProvider>
          <ReactFlow nodes={nodes} edges={edges} nodeTypes={nodeTypes} fitView fitViewOptions={{ padding: 0.15, maxZoom: 1 }}
                     nodesDraggable={false} nodesConnectable={false} elementsSelectable={false} proOptions={{ hideAttribution: true }}>
            <Background gap={16} />
          </ReactFlow>
        </ReactFlowProvider>
      </div>
      <h3 className="jc-panel__heading">Timeline</h3>
      <Timeline session={session} />
      {!compact && (
        <>
          <h3 className="jc-panel__heading">Tasks</h3>
          {Object.keys(tasks).map((name) => (
            <TaskDetails key={name} name={name} task={tasks[name]} record={session.tasks[name] || { status: 'pending', attempts: 0 }} session={session} />
          ))}
        </>
      )}
    </div>
  );
}

export default function SessionViewer({ config }) {
  return <SessionView sessionId={config.session} tasks={config.tasks} layout={config.layout} urls={config.urls} />;
}
