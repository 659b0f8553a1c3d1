import { type IncomingMessage, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Request } from 'express';
import type { Logger } from 'pino';
import { WebSocketServer } from 'ws';
import { OPERATOR_ROLES } from '../../protocol/api/session.ts';
import { SHELL_ENABLED_VARIABLE } from '../../protocol/device-config.ts';
import { SHELL_COMMAND_MAX_LENGTH, SHELL_MAX_SESSIONS_PER_DEVICE } from '../../protocol/device-shell.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { AuditRepository } from '../audit/audit.repository.ts';
import { bearerToken, type OperatorAuthenticator } from '../auth/operator-authenticator.ts';
import type { Operator } from '../auth/operator-token.repository.ts';
import type { Clock } from '../common/clock.ts';
import { answerFor, notFound } from '../common/errors.ts';
import type { DeviceRepository } from '../devices/device.repository.ts';
import type { ShellRequest, ShellTunnel } from './shell-tunnel.ts';

const SHELL_PATH = /^\/api\/v1\/devices\/([^/]+)\/shell$/;

export interface ShellUpgradeOptions {
  tunnel: ShellTunnel;
  authenticator: OperatorAuthenticator;
  devices: DeviceRepository;
  /** Whether the device's effective configuration sets BOARDFLEET_SHELL=on. */
  shellEnabled: (deviceId: string) => Promise<boolean>;
  audit: AuditRepository;
  clock: Clock;
  logger: Logger;
}

/**
 * The `upgrade` listener of the server's HTTP and HTTPS servers for `GET /api/v1/devices/{id}/shell`.
 * Everything is checked before the upgrade, and a refusal is a plain HTTP answer with the API's
 * JSON error body: the operator role (401/403), the device (404), its configuration (403
 * `shell-disabled`), its presence (409 `device-offline`). The only WebSocket route: others get 404.
 */
export function shellUpgradeListener(
  options: ShellUpgradeOptions,
): (request: IncomingMessage, socket: Duplex, head: Buffer) => void {
  const sockets = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024 });
  return (request, socket, head) => {
    const url = new URL(request.url ?? '/', 'http://upgrade.invalid');
    socket.on('error', (error) => options.logger.debug({ err: error }, 'shell upgrade socket error'));
    const match = SHELL_PATH.exec(url.pathname);
    // With a listener, Node leaves every upgrade to it: one nobody serves must not hang.
    if (!match) return refuse(socket, notFound(`WebSocket route ${url.pathname}`), options.logger);
    const deviceId = decodeURIComponent(match[1] as string);
    let operator: Operator | null = null;
    void (async () => {
      operator = await authenticateOperator(options.authenticator, request);
      const shell = await checkShellRequest(options, deviceId, url.searchParams);
      const via = bearerToken(request as Request) ? 'token' : 'session';
      const accepted: ShellRequest = { deviceId, operator, via, ...shell };
      sockets.handleUpgrade(request, socket, head, (webSocket) =>
        options.tunnel.open(webSocket, accepted).catch((error: unknown) => {
          options.logger.error({ err: error, deviceId }, 'shell session failed to start');
          webSocket.close(1011, 'the session could not be recorded');
        }),
      );
    })().catch(async (error: unknown) => {
      refuse(socket, error, options.logger);
      if (operator) await auditRefusal(options, operator, request, deviceId, error);
    });
  };
}

/** The operator role, by bearer token or the dashboard's cookie; a cookie only from this server's own pages. */
async function authenticateOperator(
  authenticator: OperatorAuthenticator,
  request: IncomingMessage,
): Promise<Operator> {
  const operator = await authenticator.identify(request as Request);
  if (OPERATOR_ROLES.indexOf(operator.role) < OPERATOR_ROLES.indexOf('operator'))
    throw new BoardfleetError('forbidden', `a shell needs the operator role; the token has ${operator.role}`);
  // A browser sends the cookie with a WebSocket from any site: the Origin tells (cross-site WebSocket hijacking).
  if (!bearerToken(request as Request)) {
    const origin = request.headers.origin;
    if (!origin || hostOf(origin) !== request.headers.host)
      throw new BoardfleetError(
        'forbidden',
        `a dashboard shell must be opened from this server's own pages (Origin ${origin ?? 'missing'})`,
      );
  }
  return operator;
}

const hostOf = (origin: string) => {
  try {
    return new URL(origin).host;
  } catch {
    return null;
  }
};

async function checkShellRequest(
  options: ShellUpgradeOptions,
  deviceId: string,
  query: URLSearchParams,
): Promise<Pick<ShellRequest, 'cols' | 'rows' | 'command'>> {
  const size = (name: 'cols' | 'rows', fallback: number) => {
    const raw = query.get(name);
    const value = raw === null ? fallback : Number(raw);
    if (!Number.isInteger(value) || value < 1 || value > 1000)
      throw new BoardfleetError('invalid-request', `${name}=${raw} must be a whole number from 1 to 1000`);
    return value;
  };
  const command = query.get('command');
  if (command !== null && (command.length === 0 || command.length > SHELL_COMMAND_MAX_LENGTH))
    throw new BoardfleetError(
      'invalid-request',
      `command must be 1 to ${SHELL_COMMAND_MAX_LENGTH} characters`,
    );
  const request = { cols: size('cols', 80), rows: size('rows', 24), command };
  const device = await options.devices.get(deviceId);
  if (!device || device.revokedAt !== null)
    throw new BoardfleetError('not-found', `device ${deviceId} not found`);
  if (!(await options.shellEnabled(deviceId)))
    throw new BoardfleetError(
      'shell-disabled',
      `the shell is off for device ${deviceId}: enable it with boardfleet config set ${SHELL_ENABLED_VARIABLE}=on --device ${deviceId}`,
    );
  if (!device.online)
    throw new BoardfleetError('device-offline', `device ${deviceId} is offline: a shell needs it connected`);
  if (options.tunnel.openOn(deviceId) >= SHELL_MAX_SESSIONS_PER_DEVICE)
    throw new BoardfleetError(
      'conflict',
      `device ${deviceId} already has ${SHELL_MAX_SESSIONS_PER_DEVICE} shell sessions open: close one first`,
    );
  return request;
}

/** The API's error answer, as a plain HTTP response on the socket that asked to upgrade. */
function refuse(socket: Duplex, error: unknown, logger: Logger): void {
  const answer = answerFor(error);
  if (answer.log === 'error') logger.error({ err: error }, 'shell upgrade failed');
  const body = JSON.stringify(answer.body);
  socket.end(
    `HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status] ?? ''}\r\n` +
      'Content-Type: application/json; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  );
}

/** A known operator refused a shell (disabled, offline, unknown device): the audit log keeps the attempt. */
async function auditRefusal(
  options: ShellUpgradeOptions,
  operator: Operator,
  request: IncomingMessage,
  deviceId: string,
  error: unknown,
): Promise<void> {
  await options.audit
    .append({
      at: options.clock.now(),
      actor: operator.name,
      actorTokenId: operator.tokenId,
      via: bearerToken(request as Request) ? 'token' : 'session',
      action: 'shell.open',
      target: deviceId.slice(0, 500),
      outcome: 'failed',
      detail: null,
      reason: answerFor(error).body.message.slice(0, 500),
    })
    .catch((failure: unknown) => options.logger.error({ err: failure }, 'shell refusal not audited'));
}
