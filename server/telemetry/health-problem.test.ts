import { describe, expect, it } from 'vitest';
import type { Health, Inventory } from '../../protocol/schemas.ts';
import { attachedBoardProblem, healthProblem, runningVersion } from './health-problem.ts';

const healthy: Health = {
  at: 1,
  uptimeSeconds: 10,
  load: [3, 2, 1],
  memory: { totalBytes: 1000, availableBytes: 500 },
  disk: { totalBytes: 1000, freeBytes: 500 },
  cpuTemperatureCelsius: 55,
  agentRssBytes: 1,
};

const inventory = (changes: Partial<Inventory>): Inventory => ({
  board: 'rpi-4b',
  os: 'Debian',
  kernel: '6.1',
  architecture: 'arm64',
  agentVersion: '1.0.0',
  hostname: 'pi',
  slots: [],
  attachedBoards: [],
  at: 1,
  ...changes,
});

describe('healthProblem', () => {
  it.each([
    ['a healthy heartbeat', healthy, null],
    [
      'no thermal zone and zero totals',
      { ...healthy, cpuTemperatureCelsius: null, disk: { totalBytes: 0, freeBytes: 0 } },
      null,
    ],
    ['a nearly full disk', { ...healthy, disk: { totalBytes: 1000, freeBytes: 40 } }, 'disk 96% full'],
    [
      'little memory left',
      { ...healthy, memory: { totalBytes: 1000, availableBytes: 99 } },
      'memory 90% used',
    ],
    ['a hot CPU', { ...healthy, cpuTemperatureCelsius: 80.4 }, 'CPU at 80 °C'],
    [
      'several problems at once',
      { ...healthy, disk: { totalBytes: 100, freeBytes: 1 }, cpuTemperatureCelsius: 91 },
      'disk 99% full, CPU at 91 °C',
    ],
  ] as const)('judges %s', (_name, health, expected) => {
    expect(healthProblem(health as Health)).toBe(expected);
  });
});

describe('attachedBoardProblem', () => {
  it('names a known board that does not answer Firmata, and ignores unknown or answering ones', () => {
    expect(
      attachedBoardProblem(
        inventory({
          attachedBoards: [
            { port: '/dev/ttyACM0', board: 'uno', firmware: null, firmwareVersion: null },
            { port: '/dev/ttyACM1', board: 'nano', firmware: 'BoardfleetFirmata', firmwareVersion: '2.5' },
            { port: '/dev/ttyUSB0', board: null, firmware: null, firmwareVersion: null },
          ],
        }),
      ),
    ).toBe('uno on /dev/ttyACM0 does not answer Firmata');
    expect(attachedBoardProblem(inventory({}))).toBeNull();
  });
});

describe('runningVersion', () => {
  it('is the active slot’s version', () => {
    expect(
      runningVersion(
        inventory({
          slots: [
            { name: 'a', artifact: 'os', version: '1.0.0', active: false },
            { name: 'b', artifact: 'os', version: '1.1.0', active: true },
          ],
        }),
      ),
    ).toBe('1.1.0');
    expect(runningVersion(inventory({}))).toBeNull();
  });
});
