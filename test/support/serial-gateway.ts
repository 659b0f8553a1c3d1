import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildFirmware } from '../../builder/mcu/build-firmware.ts';
import { type SimulatedBoard, startSimulatedBoard } from '../../mcu/simulator/simulated-board.ts';
import type { DevicePage } from '../../protocol/api/devices.ts';
import { secretFile, startAgentProcess } from './agent-process.ts';
import { sqliteBackend } from './databases.ts';
import { eventually, startTestServer, type TestServer } from './test-server.ts';

/** The simplest firmware that talks: a counter over serial at the usual monitor speed, 115200 baud. */
const COUNTER_SKETCH = `
unsigned long count = 0;

void setup() {
  Serial.begin(115200);
  Serial.println("counter starting");
}

void loop() {
  Serial.print("count ");
  Serial.println(count++);
  delay(50);
}
`;

export interface SerialGateway {
  server: TestServer;
  uno: SimulatedBoard;
  agent: ReturnType<typeof startAgentProcess>;
  deviceId: string;
}

/**
 * A gateway with a board on its serial port, for live-log tests of the board's output: a real
 * server, a simulated Uno (simavr) running a counter sketch our builder built, and a real agent
 * process with that Uno attached, online with the board in its inventory (tagged `serial`).
 */
export async function startSerialGateway(name: string, timeoutMs: number): Promise<SerialGateway> {
  const temporary = (suffix: string) => mkdtempSync(join(tmpdir(), `${name}-${suffix}-`));
  const sketchDir = join(temporary('sketch'), 'counter');
  mkdirSync(sketchDir);
  writeFileSync(join(sketchDir, 'counter.ino'), COUNTER_SKETCH);
  const [counter, server] = await Promise.all([
    buildFirmware({ sketchPath: sketchDir, board: 'uno', outDir: temporary('build') }),
    startTestServer(sqliteBackend),
  ]);
  const uno = await startSimulatedBoard({
    board: 'uno',
    stateDir: temporary('uno'),
    firmwareHex: counter.hexPath,
  });
  const { body: token } = await server.api<{ token: string }>('POST', '/api/v1/provisioning-tokens', {
    name,
  });
  const agent = startAgentProcess([
    ...['--server', server.httpUrl, '--provisioning-token-file', secretFile(token.token)],
    ...['--name', name, '--tag', 'serial', '--data-dir', temporary('agent')],
    ...['--heartbeat', '1', '--attached-board', 'uno', '--attached-port', uno.portPath],
  ]);
  const deviceId = await eventually(
    'the gateway online with its board in the inventory',
    async () =>
      (await server.api<DevicePage>('GET', '/api/v1/devices?tag=serial&online=true')).body.devices.find(
        (device) => (device.inventory?.attachedBoards.length ?? 0) > 0,
      )?.id,
    timeoutMs,
  );
  return { server, uno, agent, deviceId };
}
