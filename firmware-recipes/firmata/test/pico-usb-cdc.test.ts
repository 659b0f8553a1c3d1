import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSetupPacket, DataDirection, SetupRecipient, SetupRequest, SetupType, USBCDC } from 'rp2040js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildUf2Firmware } from '../../../builder/mcu/rp2040/build-uf2-firmware.ts';
import {
  decodeTwoByteString,
  FirmataDecoder,
  type FirmataMessage,
  sysex,
  sysexReplies,
} from './firmata-messages.ts';
import { Rp2040jsPico } from './rp2040js-pico.ts';

const RECIPE_DIRECTORY = fileURLToPath(new URL('..', import.meta.url));
const RP2040_SOURCES = ['startup.c', 'clock.c', 'uart.c', 'usb-cdc.c', 'usb-clock.c', 'usb-descriptors.c'];

/**
 * The echo firmware as a recipe of its own, built by the real UF2 builder. Recipes name files
 * inside their folder only, so the folder is a temporary one linking to this recipe's src/ and test/.
 */
const ECHO_RECIPE = `id: usb-echo
kind: mcu-firmware
version: 1.0.0
language: c
sources: [test/usb-echo/main.c]
mcus: [rp2040]
architectures:
  rp2040:
    sources: [${RP2040_SOURCES.map((source) => `src/rp2040/${source}`).join(', ')}]
    boot2: src/rp2040/boot2.c
    linkerScript: src/rp2040/rp2040.ld
`;

const EP0_MAX_PACKET = 64;
const DESCRIPTOR_DEVICE = 1;
const DESCRIPTOR_CONFIGURATION = 2;
const DESCRIPTOR_STRING = 3;
const DESCRIPTOR_DEVICE_QUALIFIER = 6;
const LANGUAGE_EN_US = 0x0409;
const CDC_SET_LINE_CODING = 0x20;
const CDC_GET_LINE_CODING = 0x21;
/** The controller's EP_STALL_ARM register, and EP0's IN buffer control word in its DPRAM. */
const USB_EP_STALL_ARM = 0x5011_0068;
const EP0_BOTH_DIRECTIONS = 0b11;
const USB_EP0_IN_BUFFER_CONTROL = 0x5010_0080;
const USB_BUFFER_STALL = 1 << 11;
/** Simulated time allowed for anything the host waits for; enumeration takes about 11 ms. */
const SIMULATED_PATIENCE_MS = 2000;
const REPORT_VERSION = 0xf9;
const REPORT_FIRMWARE = 0x79;

interface ControlTransfer {
  setup: Uint8Array;
  /** The data stage of a host-to-device request. */
  outData?: Uint8Array;
  received: number[];
  done: boolean;
}

/**
 * A Pico in rp2040js (the shared runner, which plays the boot ROM) plugged into rp2040js's USB
 * CDC host, which enumerates it, configures it and raises DTR. `control` sends further control
 * requests on endpoint 0 once the host is done; the host's own endpoint-0 handling sees none of
 * their packets.
 */
class UsbPico {
  readonly pico: Rp2040jsPico;
  private readonly host: USBCDC;
  private transfer: ControlTransfer | undefined;
  /** The host has configured the device; its SET_CONTROL_LINE_STATE (DTR) may still be in flight. */
  private configured = false;
  /** The device acknowledged DTR: the port is open, and endpoint 0 is free for `control`. */
  portOpen = false;
  /** Every byte the firmware sent on its bulk IN endpoint. */
  readonly serialBytes: number[] = [];

  constructor(uf2: Uint8Array) {
    this.pico = new Rp2040jsPico(uf2);
    const usb = this.pico.mcu.usbCtrl;
    this.host = new USBCDC(usb);
    this.host.onDeviceConnected = () => (this.configured = true);
    this.host.onSerialData = (bytes) => this.serialBytes.push(...bytes);

    const hostWrite = usb.onEndpointWrite;
    usb.onEndpointWrite = (endpoint, bytes) => {
      if (endpoint !== 0 || !this.transfer) {
        const lineStateAcknowledged = endpoint === 0 && this.configured && bytes.length === 0;
        hostWrite?.(endpoint, bytes);
        if (lineStateAcknowledged) this.portOpen = true;
        return;
      }
      this.transfer.received.push(...bytes);
      const asked = (this.transfer.setup[7]! << 8) | this.transfer.setup[6]!;
      const reading = this.transfer.setup[0]! & 0x80;
      // A read ends on a short packet or when all asked for came; a write on its zero-length status.
      this.transfer.done = reading
        ? bytes.length < EP0_MAX_PACKET || this.transfer.received.length >= asked
        : bytes.length === 0;
    };
    const hostRead = usb.onEndpointRead;
    usb.onEndpointRead = (endpoint, size) => {
      const outData = this.transfer?.outData;
      if (endpoint !== 0 || !outData || size === 0) return hostRead?.(endpoint, size);
      this.transfer!.outData = undefined;
      usb.endpointReadDone(0, outData);
    };
  }

  /** Runs the firmware until `condition` holds; fails naming `what` after SIMULATED_PATIENCE_MS. */
  runUntil(what: string, condition: () => boolean): void {
    this.pico.runUntil(what, condition, SIMULATED_PATIENCE_MS);
  }

  /** One control transfer on endpoint 0: what the device answered in its data stage. */
  control(setup: Uint8Array, outData?: Uint8Array): number[] {
    const transfer: ControlTransfer = { setup, outData, received: [], done: false };
    this.transfer = transfer;
    this.pico.mcu.usbCtrl.sendSetupPacket(setup);
    this.runUntil(`the answer to control request 0x${setup[1]!.toString(16)}`, () => transfer.done);
    this.transfer = undefined;
    return transfer.received;
  }

  getDescriptor(type: number, index: number, length: number): number[] {
    return this.control(descriptorRequest(type, index, length));
  }

  /** Sends a request the device must refuse; returns once it armed a STALL on endpoint 0. */
  expectStall(setup: Uint8Array): void {
    const { mcu } = this.pico;
    mcu.usbCtrl.sendSetupPacket(setup);
    this.runUntil(
      `a STALL for control request 0x${setup[1]!.toString(16)}`,
      () =>
        (mcu.readUint32(USB_EP_STALL_ARM) & EP0_BOTH_DIRECTIONS) === EP0_BOTH_DIRECTIONS &&
        (mcu.readUint32(USB_EP0_IN_BUFFER_CONTROL) & USB_BUFFER_STALL) !== 0,
    );
  }

  sendSerial(bytes: number[]): void {
    for (const byte of bytes) this.host.sendSerialByte(byte);
  }
}

function descriptorRequest(type: number, index: number, length: number): Uint8Array {
  return createSetupPacket({
    dataDirection: DataDirection.DeviceToHost,
    type: SetupType.Standard,
    recipient: SetupRecipient.Device,
    bRequest: SetupRequest.GetDescriptor,
    wValue: (type << 8) | index,
    wIndex: type === DESCRIPTOR_STRING ? LANGUAGE_EN_US : 0,
    wLength: length,
  });
}

function cdcRequest(direction: DataDirection, request: number, length: number): Uint8Array {
  return createSetupPacket({
    dataDirection: direction,
    type: SetupType.Class,
    recipient: SetupRecipient.Interface,
    bRequest: request,
    wValue: 0,
    wIndex: 0,
    wLength: length,
  });
}

/** Splits a configuration descriptor into its descriptors, as [type, ...rest] arrays. */
function descriptorsOf(bytes: number[]): number[][] {
  const descriptors: number[][] = [];
  for (let at = 0; at < bytes.length && bytes[at]! >= 2; at += bytes[at]!) {
    descriptors.push(bytes.slice(at + 1, at + bytes[at]!));
  }
  return descriptors;
}

/** A string descriptor's text: UTF-16LE after the length and type bytes. */
function stringOf(descriptor: number[]): string {
  return String.fromCharCode(...descriptor.slice(2, descriptor[0]).filter((_, at) => at % 2 === 0));
}

const asciiOf = (text: string) => Array.from(text, (character) => character.charCodeAt(0));
const word = (bytes: number[], at: number) => bytes[at]! | (bytes[at + 1]! << 8);

let buildDirectory: string;

beforeAll(async () => {
  buildDirectory = await mkdtemp(join(tmpdir(), 'pico-usb-cdc-'));
});

afterAll(async () => {
  await rm(buildDirectory, { recursive: true, force: true });
});

/** Builds the echo firmware, a recipe in a temporary folder linking to this recipe's src/ and test/. */
async function buildEchoFirmware(): Promise<Uint8Array> {
  const recipeDirectory = join(buildDirectory, 'echo-recipe');
  await mkdir(recipeDirectory);
  await symlink(join(RECIPE_DIRECTORY, 'src'), join(recipeDirectory, 'src'));
  await symlink(join(RECIPE_DIRECTORY, 'test'), join(recipeDirectory, 'test'));
  await writeFile(join(recipeDirectory, 'recipe.yaml'), ECHO_RECIPE);
  const firmware = await buildUf2Firmware({
    recipe: recipeDirectory,
    board: 'pico',
    outDir: join(buildDirectory, 'echo'),
  });
  expect(firmware.warnings).toBe('');
  return readFile(firmware.uf2Path);
}

describe('USB CDC-ACM port of the Pico firmware, against rp2040js USB host', { timeout: 120_000 }, () => {
  let pico: UsbPico;

  beforeAll(async () => {
    pico = new UsbPico(await buildEchoFirmware());
  }, 180_000);

  it('enumerates: the host reads the configuration, configures the device and raises DTR', () => {
    pico.runUntil('enumeration', () => pico.portOpen);
  });

  it('is 2E8A:000A, "BoardfleetFirmata" by "Boardfleet"', () => {
    const device = pico.getDescriptor(DESCRIPTOR_DEVICE, 0, 18);
    expect(device).toHaveLength(18);
    expect([word(device, 8), word(device, 10)]).toEqual([0x2e8a, 0x000a]);
    expect(stringOf(pico.getDescriptor(DESCRIPTOR_STRING, device[15]!, 255))).toBe('BoardfleetFirmata');
    expect(stringOf(pico.getDescriptor(DESCRIPTOR_STRING, device[14]!, 255))).toBe('Boardfleet');
  });

  it('describes one CDC-ACM function: an association, a communications and a data interface', () => {
    const header = pico.getDescriptor(DESCRIPTOR_CONFIGURATION, 0, 9);
    const configuration = pico.getDescriptor(DESCRIPTOR_CONFIGURATION, 0, word(header, 2));
    expect(configuration).toHaveLength(word(header, 2));
    const descriptors = descriptorsOf(configuration);
    const interfaces = descriptors.filter(([type]) => type === 4).map((fields) => fields.slice(1, 6));
    const endpoints = descriptors.filter(([type]) => type === 5).map((fields) => fields.slice(1, 4));
    expect(descriptors.find(([type]) => type === 11)?.slice(1, 5)).toEqual([0, 2, 0x02, 0x02]);
    // [number, alternate, endpoints, class, subclass]: CDC ACM, then CDC data.
    expect(interfaces).toEqual([
      [0, 0, 1, 0x02, 0x02],
      [1, 0, 2, 0x0a, 0x00],
    ]);
    // [address, type, max packet]: interrupt IN, bulk OUT, bulk IN.
    expect(endpoints).toEqual([
      [0x81, 3, 8],
      [0x02, 2, 64],
      [0x82, 2, 64],
    ]);
  });

  it('refuses the device qualifier request, as a full-speed-only device must', () => {
    pico.expectStall(descriptorRequest(DESCRIPTOR_DEVICE_QUALIFIER, 0, 10));
  });

  it('greets the host once the port is open', () => {
    pico.runUntil('the greeting', () => pico.serialBytes.length >= 9);
    expect(pico.serialBytes.splice(0)).toEqual(asciiOf('usb-echo\n'));
  });

  it('echoes bytes both ways, across several 64-byte packets', () => {
    const bytes = Array.from({ length: 200 }, (_, index) => (index * 37) & 0xff);
    pico.sendSerial(bytes);
    pico.runUntil('the echo', () => pico.serialBytes.length >= bytes.length);
    expect(pico.serialBytes.splice(0)).toEqual(bytes);
  });

  it('keeps the line coding the host sets (57600 8N1) and reports it back', () => {
    const coding = Uint8Array.of(0x00, 0xe1, 0x00, 0x00, 0, 0, 8);
    expect(pico.control(cdcRequest(DataDirection.HostToDevice, CDC_SET_LINE_CODING, 7), coding)).toEqual([]);
    expect(pico.control(cdcRequest(DataDirection.DeviceToHost, CDC_GET_LINE_CODING, 7))).toEqual([...coding]);
  });
});

describe('Boardfleet Firmata on the USB port and UART0 at once, in rp2040js', { timeout: 120_000 }, () => {
  let pico: UsbPico;
  const usb = new FirmataDecoder();
  const uart = new FirmataDecoder();
  let usbBytesDecoded = 0;
  /** What the firmware sent on USB so far, decoded. */
  const usbMessages = () => {
    for (; usbBytesDecoded < pico.serialBytes.length; usbBytesDecoded++)
      usb.push(pico.serialBytes[usbBytesDecoded]!);
    return usb.messages;
  };
  const firmwareNames = (messages: FirmataMessage[]) =>
    sysexReplies(messages, REPORT_FIRMWARE).map((data) => decodeTwoByteString(data.slice(2)));

  beforeAll(async () => {
    const firmware = await buildUf2Firmware({
      recipe: 'firmata',
      board: 'pico',
      outDir: join(buildDirectory, 'firmata'),
    });
    expect(firmware.warnings).toBe('');
    pico = new UsbPico(await readFile(firmware.uf2Path));
    pico.pico.onUartByte((byte) => uart.push(byte));
  }, 180_000);

  it('enumerates as 2E8A:000A "BoardfleetFirmata"', () => {
    pico.runUntil('enumeration', () => pico.portOpen);
    const device = pico.getDescriptor(DESCRIPTOR_DEVICE, 0, 18);
    expect([word(device, 8), word(device, 10)]).toEqual([0x2e8a, 0x000a]);
    expect(stringOf(pico.getDescriptor(DESCRIPTOR_STRING, device[15]!, 255))).toBe('BoardfleetFirmata');
  });

  it('announces its version and name on USB once the host raises DTR', () => {
    pico.runUntil('the announcement on USB', () => firmwareNames(usbMessages()).length > 0);
    expect(usbMessages()[0]).toEqual({ kind: 'version', major: 2, minor: 6 });
    expect(firmwareNames(usbMessages())).toEqual(['BoardfleetFirmata']);
  });

  it('answers REPORT_VERSION and REPORT_FIRMWARE sent over USB', () => {
    const before = usbMessages().length;
    pico.sendSerial([REPORT_VERSION, ...sysex(REPORT_FIRMWARE)]);
    pico.runUntil('the answer on USB', () => firmwareNames(usbMessages().slice(before)).length > 0);
    const replies = usbMessages().slice(before);
    expect(replies[0]).toEqual({ kind: 'version', major: 2, minor: 6 });
    expect(firmwareNames(replies)).toEqual(['BoardfleetFirmata']);
  });

  it('still answers on UART0, which announced itself at start-up', () => {
    expect(uart.messages[0]).toEqual({ kind: 'version', major: 2, minor: 6 });
    const before = uart.messages.length;
    pico.pico.send([REPORT_VERSION, ...sysex(REPORT_FIRMWARE)]);
    pico.runUntil('the answer on UART0', () => firmwareNames(uart.messages.slice(before)).length > 0);
    const replies = uart.messages.slice(before);
    expect(replies[0]).toEqual({ kind: 'version', major: 2, minor: 6 });
    expect(firmwareNames(replies)).toEqual(['BoardfleetFirmata']);
  });
});
