import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { createConnection } from 'node:net';
import { performance } from 'node:perf_hooks';
import { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEVICE_AUTH_LIMITS } from '../../server/broker/auth-rate-limiter.ts';
import { deploymentFromArtifact } from '../../server/rollouts/desired-deployment.ts';
import { uploadArtifact, sendToDevice } from '../support/artifacts.ts';
import { openDatabase } from '../../server/db/database.ts';
import { sqliteBackend } from '../support/databases.ts';
import { type ServerProcess, startServerProcess } from '../support/server-process.ts';
import { eventually } from '../support/test-server.ts';

/**
 * Issue 13 item 5: device authentication must not be a denial of service or an oracle. The server
 * runs in its own process, so the attacking clients do not share its event loop. Each attacker
 * gets its own loopback address (all of 127.0.0.0/8 reaches the server), so the per-address limit
 * of one does not touch the legitimate device on 127.0.0.1.
 */
interface Answer {
  status: number;
  retryAfter: string | undefined;
  ms: number;
}

/** A GET from a chosen local address, on a fresh connection. */
function get(url: string, authorization: string, localAddress = '127.0.0.1'): Promise<Answer> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { authorization }, localAddress, agent: false }, (response) => {
      response.on('data', () => undefined);
      response.on('end', () =>
        resolve({
          status: response.statusCode ?? 0,
          retryAfter: response.headers['retry-after'],
          ms: performance.now() - started,
        }),
      );
      response.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const basic = (deviceId: string, secret: string) =>
  `Basic ${Buffer.from(`${deviceId}:${secret}`).toString('base64')}`;

/** An MQTT CONNECT from a chosen local address: null when accepted, else the refusal. */
function mqttConnect(port: number, deviceId: string, password: string, localAddress: string) {
  return new Promise<string | null>((resolve) => {
    const client = new MqttClient(() => createConnection({ host: '127.0.0.1', port, localAddress }), {
      protocolVersion: 4,
      clientId: deviceId,
      username: deviceId,
      password,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
    });
    client.once('connect', () => client.end(() => resolve(null)));
    client.once('error', (error) => client.end(true, () => resolve(error.message)));
  });
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

describe('device authentication under attack', () => {
  let server: ServerProcess;
  const content = randomBytes(256 * 1024);

  const createDevice = async (name: string) => {
    const { body } = await server.api<{ device: { id: string }; secret: string }>('POST', '/api/v1/devices', {
      name,
      board: 'rpi-4b',
    });
    return { id: body.device.id, secret: body.secret };
  };
  const refused = async (reason: string) => {
    const metrics = await fetch(`${server.httpUrl}/metrics`, {
      headers: { authorization: `Bearer ${server.adminToken}` },
    }).then((response) => response.text());
    const line = metrics.match(
      new RegExp(`^boardfleet_device_auth_refused_total\\{reason="${reason}"\\} (\\d+)$`, 'm'),
    );
    return Number(line?.[1] ?? 0);
  };

  beforeAll(async () => {
    server = await startServerProcess(sqliteBackend);
  });
  afterAll(async () => {
    await server?.dispose();
  });

  it("400 wrong passwords for one device id do not slow another device's download, and get 429", async () => {
    const legit = await createDevice('legit');
    const target = await createDevice('target');
    const artifact = await uploadArtifact(server, content, {
      name: 'auth-dos',
      version: '1.0.0',
      boards: ['rpi-4b'],
    });
    const db = openDatabase(server.databaseUrl);
    await sendToDevice({ db }, legit.id, deploymentFromArtifact(artifact, 'dep-auth-dos')).finally(() =>
      db.destroy(),
    );
    const url = `${server.httpUrl}/api/v1/artifacts/${artifact.id}/content`;
    const download = () => get(url, basic(legit.id, legit.secret));

    const baseline: number[] = [];
    for (let i = 0; i < 5; i++) {
      const answer = await download();
      expect(answer.status).toBe(200);
      baseline.push(answer.ms);
    }

    // 20 connections at a time, as a patient attacker would keep them busy; the legitimate
    // download starts once the first wrong attempts were answered. The old scrypt check queued
    // every attempt on the thread pool that the download's file reads need as well.
    const attempts = Array.from(
      { length: 400 },
      () => () => get(url, basic(target.id, `bfd_wrong${randomBytes(8).toString('hex')}`), '127.0.0.2'),
    );
    const answers: Answer[] = [];
    let firstAnswered!: () => void;
    const firstAnswer = new Promise<void>((resolve) => (firstAnswered = resolve));
    const attacker = async () => {
      for (let attempt = attempts.shift(); attempt; attempt = attempts.shift()) {
        answers.push(await attempt());
        firstAnswered();
      }
    };
    const attack = Promise.all(Array.from({ length: 20 }, attacker));
    await firstAnswer;
    const during = await download();
    await attack;

    expect(during.status).toBe(200);
    expect(during.ms, `baseline median ${median(baseline).toFixed(1)} ms`).toBeLessThan(
      10 * median(baseline) + 500,
    );
    const statuses = answers.map((answer) => answer.status);
    expect(statuses.filter((status) => status !== 401 && status !== 429)).toEqual([]);
    expect(statuses.filter((status) => status === 401).length).toBeLessThanOrEqual(
      DEVICE_AUTH_LIMITS.perSource.freeFailures,
    );
    expect(await refused('rate-limited')).toBeGreaterThanOrEqual(
      400 - DEVICE_AUTH_LIMITS.perSource.freeFailures,
    );

    const later = await get(url, basic(target.id, 'bfd_wrong'), '127.0.0.2');
    expect(later.status).toBe(429);
    expect(Number(later.retryAfter)).toBeGreaterThanOrEqual(1);
    // The id waits whatever the address; the legitimate device was never held up.
    expect((await get(url, basic(target.id, target.secret), '127.0.0.3')).status).toBe(429);
    expect((await download()).status).toBe(200);
  });

  it('answers a wrong secret for a known id as fast as for an unknown id', async () => {
    const known = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => createDevice(`known-${i}`)));
    const url = `${server.httpUrl}/api/v1/artifacts/art-none/content`;
    const knownTimes: number[] = [];
    const unknownTimes: number[] = [];
    // Below every limit: each known id fails 3 times and each address (127.0.1.x) 2 times.
    for (let i = 0; i < 18; i++) {
      const source = `127.0.1.${i + 1}`;
      const device = known[i % known.length]!;
      const answers = [
        await get(url, basic(device.id, 'bfd_wrong'), source),
        await get(url, basic(`dev-${randomBytes(6).toString('hex')}`, 'bfd_wrong'), source),
      ];
      expect(answers.map((answer) => answer.status)).toEqual([401, 401]);
      knownTimes.push(answers[0]!.ms);
      unknownTimes.push(answers[1]!.ms);
    }
    // The old check spent a 30 ms scrypt on known ids only (150-370 ms vs 2-44 ms under load).
    expect(
      Math.abs(median(knownTimes) - median(unknownTimes)),
      `medians: known ${median(knownTimes).toFixed(1)} ms, unknown ${median(unknownTimes).toFixed(1)} ms`,
    ).toBeLessThan(15);
  });

  it('refuses MQTT connections for a device id after repeated wrong passwords, the right one too, until the wait is over', async () => {
    const device = await createDevice('mqtt-target');
    const before = await refused('rate-limited');
    for (let i = 0; i < DEVICE_AUTH_LIMITS.perDevice.freeFailures; i++)
      expect(await mqttConnect(server.mqttPort, device.id, 'bfd_wrong', '127.0.2.1')).toMatch(
        /Bad username or password/,
      );
    expect(await mqttConnect(server.mqttPort, device.id, device.secret, '127.0.2.2')).toMatch(
      /Bad username or password/,
    );
    expect(await refused('rate-limited')).toBe(before + 1);
    await eventually(
      'the right secret accepted once the wait is over',
      async () => (await mqttConnect(server.mqttPort, device.id, device.secret, '127.0.2.2')) === null,
    );
  });

  it('refuses MQTT connections from an address that sent many wrong passwords, and only from it', async () => {
    const device = await createDevice('mqtt-neighbour');
    for (let i = 0; i < DEVICE_AUTH_LIMITS.perSource.freeFailures; i++)
      expect(
        await mqttConnect(
          server.mqttPort,
          `dev-guess${String(i).padStart(4, '0')}`,
          'bfd_wrong',
          '127.0.3.1',
        ),
      ).toMatch(/Bad username or password/);
    expect(await mqttConnect(server.mqttPort, device.id, device.secret, '127.0.3.1')).toMatch(
      /Bad username or password/,
    );
    expect(await mqttConnect(server.mqttPort, device.id, device.secret, '127.0.3.2')).toBeNull();
  });
});
