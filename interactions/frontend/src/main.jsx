// Mounts what the admin page asks for: the editor and endpoint panel (interaction pages, config
// in #canvas-config) or the session viewer (session page, config in #session-viewer-config).
import '@xyflow/react/dist/style.css';
import './canvas.css';
import React from 'react';
import { createRoot } from 'react-dom/client';
import Editor from './Editor.jsx';
import EndpointPanel from './EndpointPanel.jsx';
import SessionViewer from './SessionViewer.jsx';

function config(id) {
  const element = document.getElementById(id);
  return element ? JSON.parse(element.textContent) : null;
}

function mount() {
  const editorConfig = config('canvas-config');
  const canvas = document.getElementById('junction-canvas');
  const textarea = document.getElementById('id_tasks');
  if (editorConfig && canvas && textarea) {
    createRoot(canvas).render(<Editor config={editorConfig} textarea={textarea} form={textarea.form} />);
  }
  const endpoint = document.getElementById('junction-endpoint');
  if (editorConfig && endpoint && editorConfig.interaction) {
    createRoot(endpoint).render(<EndpointPanel config={editorConfig} />);
  }
  const viewerConfig = config('session-viewer-config');
  const viewer = document.getElementById('junction-session');
  if (viewerConfig && viewer) createRoot(viewer).render(<SessionViewer config={viewerConfig} />);
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', mount);
else mount();
