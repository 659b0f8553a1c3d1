import { describe, expect, it } from 'vitest';
import { getBoard } from '../../boards/board-catalogue.ts';
import { findBoardPort } from './find-port.ts';

/** What `SerialPort.list()` returns: every field present, undefined when unknown. */
const listed =
  (...ports: Array<{ path: string; vendorId?: string; productId?: string; manufacturer?: string }>) =>
  async () =>
    ports.map((port) => ({
      manufacturer: undefined,
      serialNumber: undefined,
      pnpId: undefined,
      locationId: undefined,
      vendorId: undefined,
      productId: undefined,
      ...port,
    }));

describe('findBoardPort (--port auto)', () => {
  const uno = getBoard('uno');

  it('picks the one port whose USB id the board file lists', async () => {
    const list = listed(
      { path: '/dev/ttyS0' },
      { path: '/dev/ttyACM0', vendorId: '2341', productId: '0043' },
    );
    expect(await findBoardPort(uno, list)).toBe('/dev/ttyACM0');
  });

  it('lists what is plugged in when nothing matches', async () => {
    const list = listed(
      { path: '/dev/ttyS0' },
      { path: '/dev/ttyUSB0', vendorId: '0403', productId: '6001', manufacturer: 'FTDI' },
    );
    await expect(findBoardPort(uno, list)).rejects.toMatchObject({
      code: 'port-not-found',
      message:
        'No Arduino Uno found: no serial port has one of its USB ids. Plugged in: /dev/ttyS0 (not USB), ' +
        '/dev/ttyUSB0 (0403:6001 FTDI). Plug the board in, or name its port with --port.',
    });
  });

  it('asks for --port when several ports could be the board', async () => {
    const list = listed(
      { path: '/dev/ttyACM0', vendorId: '2341', productId: '0043' },
      { path: '/dev/ttyUSB0', vendorId: '1a86', productId: '7523' },
    );
    await expect(findBoardPort(uno, list)).rejects.toMatchObject({
      code: 'port-ambiguous',
      message:
        '2 ports could be Arduino Uno: /dev/ttyACM0 (2341:0043 Arduino Uno R3), /dev/ttyUSB0 (1a86:7523 CH340 USB-serial). ' +
        'Say which with --port.',
    });
  });

  it('says when no serial port is plugged in at all', async () => {
    await expect(findBoardPort(uno, listed())).rejects.toMatchObject({
      message:
        'No Arduino Uno found: no serial port has one of its USB ids. Plugged in: no serial ports at all. ' +
        'Plug the board in, or name its port with --port.',
    });
  });
});
