// Same-origin calls to Junction's API with the admin's session: the CSRF token goes with every
// unsafe method (DRF's SessionAuthentication enforces it). Errors arrive in the one shape
// {code, message, details} and are thrown as ApiError.

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
    this.details = (body && body.details) || {};
  }
}

function csrfToken() {
  const cookie = document.cookie.split(';').map((c) => c.trim()).find((c) => c.startsWith('csrftoken='));
  if (cookie) return decodeURIComponent(cookie.slice('csrftoken='.length));
  const input = document.querySelector('input[name=csrfmiddlewaretoken]');
  return input ? input.value : '';
}

export async function api(url, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRFToken'] = csrfToken();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(url, {
    method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = { message: text }; }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// Every page of a paginated list.
export async function apiList(url) {
  const items = [];
  let next = url;
  while (next) {
    const page = await api(next);
    if (Array.isArray(page)) return page;
    items.push(...page.results);
    next = page.next;
  }
  return items;
}

export function withId(template, placeholder, id) {
  return template.replace(placeholder, id);
}
