// The endpoint panel of a saved interaction: URL, headers, example body, curl; a Run form that
// fills the blanks and follows the session live; activate / deactivate; its sessions.
import React, { useEffect, useState } from 'react';
import { api, withId } from './api.js';
import { SessionView } from './SessionViewer.jsx';

function blanksOf(body) {
  const out = [];
  for (const [task, fields] of Object.entries(body || {})) {
    for (const [field, example] of Object.entries(fields || {})) out.push({ task, field, example });
  }
  return out;
}

export default function EndpointPanel({ config }) {
  const { urls } = config;
  const [endpoint, setEndpoint] = useState(null);
  const [active, setActive] = useState(config.interaction.isActive);
  const [definition, setDefinition] = useState(null);
  const [values, setValues] = useState({});
  const [problems, setProblems] = useState({});
  const [error, setError] = useState(null);
  const [runError, setRunError] = useState(null);
  const [session, setSession] = useState(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    Promise.all([api(urls.endpoint), api(urls.interaction)]).then(([e, interaction]) => {
      setEndpoint(e);
      setDefinition(interaction);
      setActive(interaction.is_active);
      setValues(Object.fromEntries(blanksOf(e.body).map((b) => [`${b.task}.${b.field}`, JSON.stringify(b.example)])));
    }).catch((e) => setError(e.message));
  }, []);

  const toggle = async (on) => {
    setBusy(true);
    try {
      const answer = await api(on ? urls.activate : urls.deactivate, { method: 'POST' });
      setActive(answer.is_active);
    } catch (e) {
      setRunError(e.message);
    } finally {
      setBusy(false);
    }
  };

  const run = async () => {
    const body = {};
    const bad = {};
    for (const b of blanksOf(endpoint.body)) {
      const key = `${b.task}.${b.field}`;
      try {
        (body[b.task] = body[b.task] || {})[b.field] = JSON.parse(values[key]);
      } catch (e) {
        bad[key] = 'Not valid JSON (a string needs "quotes").';
      }
    }
    setProblems(bad);
    if (Object.keys(bad).length) return;
    setBusy(true);
    setRunError(null);
    try {
      const answer = await api(urls.run, { method: 'POST', body });
      setSession(null);
      setTimeout(() => setSession(answer.id), 0);
    } catch (e) {
      setRunError(e.message);
      setProblems(Object.fromEntries(Object.entries(e.details || {}).map(([k, v]) => [k, [].concat(v).join(' ')])));
    } finally {
      setBusy(false);
    }
  };

  if (error) return <div className="jc-endpoint jc-error" data-testid="endpoint-panel">{error}</div>;
  if (!endpoint) return <div className="jc-endpoint" data-testid="endpoint-panel">Loading the endpoint…</div>;
  const blanks = blanksOf(endpoint.body);
  return (
    <div className="jc-endpoint" data-testid="endpoint-panel">
      <div className="jc-toolbar">
        <strong>Endpoint</strong>
        <span className={`jc-pill ${active ? 'jc-status--completed' : 'jc-status--pending'}`} data-testid="endpoint-status">{active ? 'active' : 'inactive'}</span>
        <span className="jc-spacer" />
        {active
          ? <button type="button" className="jc-button" data-testid="deactivate-button" disabled={busy} onClick={() => toggle(false)}>Deactivate</button>
          : <button type="button" className="jc-button jc-primary" data-testid="activate-button" disabled={busy} onClick={() => toggle(true)}>Activate</button>}
        <a className="jc-button" href={urls.sessions} data-testid="sessions-link">Sessions of this interaction</a>
      </div>
      <div className="jc-endpoint__grid">
        <div>
          <h4>Request</h4>
          <pre data-testid="endpoint-url">{endpoint.method} {endpoint.url}</pre>
          <h4>Headers</h4>
          <pre data-testid="endpoint-headers">{Object.entries(endpoint.headers || {}).map(([k, v]) => `${k}: ${v}`).join('\n')}</pre>
          <h4>Body (example)</h4>
          <pre data-testid="endpoint-body">{JSON.stringify(endpoint.body, null, 2)}</pre>
          <h4>curl</h4>
          <pre className="jc-curl" data-testid="endpoint-curl">{endpoint.curl}</pre>
          {definition && <div className="jc-help">Version {definition.version}: the endpoint runs the saved definition.</div>}
        </div>
        <div>
          <h4>Run</h4>
          {blanks.length === 0 && <div className="jc-help">No blanks: the call needs no body.</div>}
          {blanks.map((b) => {
            const key = `${b.task}.${b.field}`;
            const problem = problems[key] || problems[`${b.task}.${b.field}`];
            return (
              <label key={key} className="jc-run-field">
                <span><code>{b.task}</code> · {b.field}</span>
                <textarea rows={2} data-testid={`run-input-${b.task}-${b.field}`} value={values[key] ?? ''}
                          onChange={(e) => setValues({ ...values, [key]: e.target.value })} />
                {problem && <span className="jc-error" data-testid={`run-error-${b.task}-${b.field}`}>{problem}</span>}
              </label>
            );
          })}
          <button type="button" className="jc-button jc-primary" data-testid="run-button" disabled={busy || !active}
                  title={active ? '' : 'Activate the interaction first'} onClick={run}>Run</button>
          {!active && <span className="jc-help"> Activate it to run it.</span>}
          {runError && <div className="jc-error" data-testid="run-error">{runError}</div>}
        </div>
      </div>
      {session && definition && (
        <SessionView key={session} sessionId={session} tasks={definition.tasks} layout={config.layout} urls={urls} compact />
      )}
    </div>
  );
}
