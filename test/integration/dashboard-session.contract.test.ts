import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CSRF_HEADER, SESSION_COOKIE } from '../../protocol/api/session.ts';
import { databaseBackends } from '../support/databases.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

const CSRF = { [CSRF_HEADER]: '1' };

describe.each(databaseBackends)('the dashboard session cookie on $name', (backend) => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(backend);
  });

  afterAll(async () => {
    await server?.dispose();
  });

  const request = (method: string, path: string, headers: Record<string, string> = {}, body?: unknown) =>
    fetch(`${server.httpUrl}${path}`, {
      method,
      headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });

  const signIn = async (token: string, headers: Record<string, string> = {}) => {
    const response = await request('POST', '/api/v1/session', { ...CSRF, ...headers }, { token });
    expect(response.status).toBe(200);
    const setCookie = response.headers.getSetCookie();
    expect(setCookie).toHaveLength(1);
    const header = setCookie[0] as string;
    const value = header.split(';')[0]?.split('=')[1] as string;
    return { header, cookie: { cookie: `${SESSION_COOKIE}=${value}` }, value, body: await response.json() };
  };

  const newToken = async (role: string) =>
    (await server.api<{ id: string; token: string }>('POST', '/api/v1/operator-tokens', { name: role, role }))
      .body;

  it('sets an HttpOnly, SameSite=Strict session cookie that holds a session id, not the token', async () => {
    const session = await signIn(server.adminToken);
    expect(session.body).toEqual({ name: 'admin', role: 'admin' });
    const attributes = session.header.split(';').map((part) => part.trim().toLowerCase());
    expect(attributes).toContain('httponly');
    expect(attributes).toContain('samesite=strict');
    expect(attributes).toContain('path=/');
    expect(attributes.some((part) => part.startsWith('max-age='))).toBe(true);
    expect(attributes).not.toContain('secure');
    expect(session.value).not.toContain(server.adminToken);
    const stored = await server.db.selectFrom('operator_sessions').select('id_hash').execute();
    expect(stored.map((row) => row.id_hash)).not.toContain(session.value);

    const me = await request('GET', '/api/v1/me', session.cookie);
    expect(me.status).toBe(200);
    expect(await me.json()).toEqual({ name: 'admin', role: 'admin' });
  });

  it('marks the cookie Secure when the browser came over https through a proxy', async () => {
    const session = await signIn(server.adminToken, { 'x-forwarded-proto': 'https' });
    expect(session.header.split(';').map((part) => part.trim().toLowerCase())).toContain('secure');
  });

  it('refuses a sign-in without the CSRF header or with a wrong token, and sets no cookie', async () => {
    const withoutHeader = await request('POST', '/api/v1/session', {}, { token: server.adminToken });
    expect(withoutHeader.status).toBe(403);
    expect(withoutHeader.headers.getSetCookie()).toEqual([]);
    const wrong = await request('POST', '/api/v1/session', CSRF, { token: 'bft_wrong' });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.getSetCookie()).toEqual([]);
  });

  it('lets a cookie write through only with the CSRF header', async () => {
    const session = await signIn(server.adminToken);
    const body = { name: 'by-cookie' };
    const refused = await request('POST', '/api/v1/devices', session.cookie, body);
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { message: string }).message).toContain(CSRF_HEADER);
    const names = async () =>
      (await server.db.selectFrom('devices').select('name').execute()).map((row) => row.name);
    expect(await names()).not.toContain('by-cookie');

    const accepted = await request('POST', '/api/v1/devices', { ...session.cookie, ...CSRF }, body);
    expect(accepted.status).toBe(201);
    expect(await names()).toContain('by-cookie');
  });

  it('keeps the role of the token the session was opened with', async () => {
    const viewer = await newToken('viewer');
    const session = await signIn(viewer.token);
    const refused = await request(
      'POST',
      '/api/v1/devices',
      { ...session.cookie, ...CSRF },
      { name: 'by-viewer' },
    );
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { message: string }).message).toContain('operator role');
  });

  it('streams live events with the cookie alone', async () => {
    const session = await signIn(server.adminToken);
    const abort = new AbortController();
    const response = await fetch(`${server.httpUrl}/api/v1/live?health=none`, {
      headers: session.cookie,
      signal: abort.signal,
    });
    expect(response.status).toBe(200);
    const reader = (response.body as ReadableStream<Uint8Array>)
      .pipeThrough(new TextDecoderStream())
      .getReader();
    let text = '';
    while (!text.includes('event: hello')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    abort.abort();
    expect(text).toContain('event: hello');
  });

  it('ends the session on sign-out and clears the cookie', async () => {
    const session = await signIn(server.adminToken);
    const out = await request('DELETE', '/api/v1/session', session.cookie);
    expect(out.status).toBe(200);
    const cleared = out.headers.getSetCookie()[0] as string;
    expect(cleared).toMatch(new RegExp(`^${SESSION_COOKIE}=;`));
    expect(cleared.toLowerCase()).toContain('expires=thu, 01 jan 1970');
    expect((await request('GET', '/api/v1/me', session.cookie)).status).toBe(401);
  });

  it('ends every session of a token the moment it is revoked or expires', async () => {
    const revokedToken = await newToken('operator');
    const revoked = await signIn(revokedToken.token);
    expect((await request('GET', '/api/v1/me', revoked.cookie)).status).toBe(200);
    expect((await server.api('DELETE', `/api/v1/tokens/${revokedToken.id}`)).status).toBe(200);
    const after = await request('GET', '/api/v1/me', revoked.cookie);
    expect(after.status).toBe(401);
    expect(((await after.json()) as { message: string }).message).toContain('session has ended');

    const expiringToken = await newToken('viewer');
    const expiring = await signIn(expiringToken.token);
    await server.db
      .updateTable('operator_tokens')
      .set({ expires_at: Date.now() - 1 })
      .where('id', '=', expiringToken.id)
      .execute();
    expect((await request('GET', '/api/v1/me', expiring.cookie)).status).toBe(401);
  });

  it('ends a session at its own expiry, and never outlives its token', async () => {
    const token = await server.api<{ id: string; token: string; expiresAt: number }>(
      'POST',
      '/api/v1/operator-tokens',
      { name: 'brief', role: 'viewer', expiresIn: '90m' },
    );
    const session = await signIn(token.body.token);
    const maxAge = Number(/max-age=(\d+)/i.exec(session.header)?.[1]);
    expect(maxAge).toBeGreaterThan(80 * 60);
    expect(maxAge).toBeLessThanOrEqual(90 * 60);
    const [row] = await server.db
      .selectFrom('operator_sessions')
      .select(['id_hash', 'expires_at'])
      .where('token_id', '=', token.body.id)
      .execute();
    expect(row?.expires_at).toBeLessThanOrEqual(token.body.expiresAt);
    await server.db
      .updateTable('operator_sessions')
      .set({ expires_at: Date.now() - 1 })
      .where('token_id', '=', token.body.id)
      .execute();
    expect((await request('GET', '/api/v1/me', session.cookie)).status).toBe(401);
  });

  it('lets a bearer token win over a cookie, and needs no CSRF header for it', async () => {
    const viewer = await newToken('viewer');
    const session = await signIn(viewer.token);
    const created = await request(
      'POST',
      '/api/v1/devices',
      { ...session.cookie, authorization: `Bearer ${server.adminToken}` },
      { name: 'by-bearer' },
    );
    expect(created.status).toBe(201);
  });
});
