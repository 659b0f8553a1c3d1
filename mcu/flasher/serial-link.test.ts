import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LinkLostError, LinkTimeoutError, SerialPortLink } from './serial-link.ts';

// Integration: the real serialport bindings on a pty pair (socat), as a USB serial port behaves.
describe('SerialPortLink on a real pty', () => {
  let directory: string;
  let socat: ChildProcess;
  let hostPath: string;
  let devicePath: string;

  beforeEach(async () => {
    directory = await mkdtemp(join(tmpdir(), 'boardfleet-link-'));
    hostPath = join(directory, 'host');
    devicePath = join(directory, 'device');
    socat = spawn('socat', [`pty,raw,echo=0,link=${hostPath}`, `pty,raw,echo=0,link=${devicePath}`], {
      stdio: 'ignore',
    });
    for (let i = 0; i < 100 && !(existsSync(hostPath) && existsSync(devicePath)); i++) await sleep(20);
  });

  afterEach(async () => {
    if (socat.exitCode === null) socat.kill();
    await rm(directory, { recursive: true, force: true });
  });

  it('reads exactly the bytes asked for, and times out naming how many arrived', async () => {
    const host = await SerialPortLink.open(hostPath, 115200);
    const device = await SerialPortLink.open(devicePath, 115200);
    await device.write(Uint8Array.of(1, 2, 3));
    expect([...(await host.read(2, 1000))]).toEqual([1, 2]);
    await expect(host.read(2, 200)).rejects.toEqual(new LinkTimeoutError(2, 1));
    await host.close();
    await device.close();
  });

  it('refuses a second opener with port-busy, naming the port', async () => {
    const first = await SerialPortLink.open(hostPath, 115200);
    await expect(SerialPortLink.open(hostPath, 115200)).rejects.toMatchObject({
      code: 'port-busy',
      message: `${hostPath} is in use by another program (a serial monitor, the Arduino IDE, a running boardfleet agent or flash); close it and try again`,
    });
    await first.close();
  });

  it('turns a read that waits on a vanished port, and any later write, into LinkLostError', async () => {
    const host = await SerialPortLink.open(hostPath, 115200);
    const pending = host.read(1, 500);
    socat.kill();
    await expect(pending).rejects.toBeInstanceOf(LinkLostError);
    await expect(host.write(Uint8Array.of(0x30, 0x20))).rejects.toBeInstanceOf(LinkLostError);
    await expect(host.read(1, 100)).rejects.toBeInstanceOf(LinkLostError);
  });
});
