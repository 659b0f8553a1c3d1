import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceRecord } from '../../server/devices/device.repository.ts';
import { secretFile, startAgentProcess, stopProcess } from '../support/agent-process.ts';
import { sqliteBackend } from '../support/databases.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

/** The agent's pino lines, parsed; anything else it printed (a stack trace, say) is kept as text. */
function logLines(output: string): Array<{ msg?: string; time?: number; text: string }> {
  return output
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((text) => {
      try {
        return { ...(JSON.parse(text) as { msg?: string; time?: number }), text };
      } catch {
        return { text };
      }
    });
}

describe('agent secrets (issue 13, item 14)', () => {
  let server: TestServer;
  const agents: Array<ReturnType<typeof startAgentProcess>> = [];
  const dataDirs: string[] = [];

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
  });
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((agent) => stopProcess(agent, 'SIGKILL')));
    for (const dir of dataDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  afterAll(async () => {
    await server?.dispose();
  });

  const dataDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'boardfleet-agent-secrets-'));
    dataDirs.push(dir);
    return dir;
  };
  const agent = (args: string[], env: Record<string, string> = {}) => {
    const child = startAgentProcess(['--server', server.httpUrl, '--data-dir', dataDir(), ...args], env);
    agents.push(child);
    return child;
  };
  const createDevice = async (name: string) =>
    (await server.api<{ device: { id: string }; secret: string }>('POST', '/api/v1/devices', { name })).body;
  const online = (name: string) =>
    eventually(
      `${name} online`,
      async () =>
        (
          await server.api<{ devices: DeviceRecord[] }>('GET', '/api/v1/devices?limit=1000')
        ).body.devices.find((device) => device.name === name)?.online,
      30_000,
    );

  it.each([
    ['--secret', 'bfd_visible-to-everyone', /--secret-file PATH or BOARDFLEET_SECRET/],
    [
      '--provisioning-token',
      'bfp_visible-to-everyone',
      /--provisioning-token-file PATH or BOARDFLEET_PROVISIONING_TOKEN/,
    ],
  ])('refuses %s on the command line and says what to use instead', async (flag, secret, advice) => {
    const child = agent(['--device-id', 'dev-x', flag, secret]);
    const code = await eventually('the agent to exit', () => child.exitCode ?? undefined, 30_000);
    expect(code).toBe(1);
    expect(child.output()).toMatch(advice);
    expect(child.output()).not.toContain(secret);
  });

  it('runs as the README says (secret files, or the environment) with no secret in its argv', async () => {
    const { token } = (
      await server.api<{ token: string }>('POST', '/api/v1/provisioning-tokens', { name: 'readme' })
    ).body;
    const provisioned = agent(['--provisioning-token-file', secretFile(token), '--name', 'readme-token']);
    const device = await createDevice('readme-secret');
    const given = agent([
      ...['--device-id', device.device.id, '--secret-file', secretFile(device.secret)],
      ...['--mqtt', server.mqttUrl],
    ]);
    const fromEnvironment = await createDevice('readme-env');
    const environment = agent(['--device-id', fromEnvironment.device.id, '--mqtt', server.mqttUrl], {
      BOARDFLEET_SECRET: fromEnvironment.secret,
    });

    await Promise.all(['readme-token', 'readme-secret', 'readme-env'].map(online));
    for (const [child, secret] of [
      [provisioned, token],
      [given, device.secret],
      [environment, fromEnvironment.secret],
    ] as const) {
      // What `ps` shows every user of the machine.
      const argv = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8');
      expect(argv).toContain('agent');
      expect(argv).not.toContain(secret);
    }
  });

  it('logs one line per refused attempt, without a stack trace, and waits longer after each', async () => {
    const device = await createDevice('wrong-secret');
    const child = agent([
      ...['--device-id', device.device.id, '--secret-file', secretFile(`${device.secret}-wrong`)],
      ...['--mqtt', server.mqttUrl],
    ]);
    const attemptLines = () =>
      logLines(child.output()).filter((line) => /^MQTT connection attempt \d+ failed/.test(line.msg ?? ''));
    const ATTEMPTS = 4;
    await eventually(
      `${ATTEMPTS} refused attempts logged`,
      () => {
        if (child.exitCode !== null) throw new Error(`agent exited:\n${child.output()}`);
        return attemptLines().length >= ATTEMPTS;
      },
      // Backoff alone (at most 1.5 + 3 + 6 s) plus the connects on a loaded machine.
      60_000,
    );

    const output = child.output();
    expect(output).not.toContain('"stack"');
    expect(output).not.toMatch(/\n\s+at /);
    const mqttLines = logLines(output).filter((line) => /MQTT/.test(line.msg ?? ''));
    const attempts = attemptLines();
    // One line per attempt, and nothing else about MQTT.
    expect(mqttLines.map((line) => line.msg)).toEqual(attempts.map((line) => line.msg));
    attempts.forEach((line, index) => {
      expect(line.msg).toMatch(
        new RegExp(`^MQTT connection attempt ${index + 1} failed: Connection refused`),
      );
    });
    // Backoff doubles from 1 s with ±50 % jitter, so the k-th wait is at least 0.5 × 2^(k-1) s; a
    // loaded machine only makes it longer. A tight loop, or a fixed delay, fails by the third.
    const times = attempts.map((line) => line.time as number);
    for (let k = 1; k < ATTEMPTS; k++) {
      expect(times[k]! - times[k - 1]!, `wait before attempt ${k + 1}`).toBeGreaterThanOrEqual(
        500 * 2 ** (k - 1) - 5,
      );
    }
    // No secret in what it logged either.
    expect(output).not.toContain(device.secret);
  }, 90_000);
});
