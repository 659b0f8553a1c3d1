import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { resolvePort } from '../../mcu/flasher/find-port.ts';
import { parseMonitorSettings } from '../../mcu/monitor/monitor-settings.ts';
import { openSerialMonitor } from '../../mcu/monitor/serial-monitor.ts';

interface MonitorFlags {
  port: string;
  baud: string;
  eol: string;
  timestamps?: boolean;
  reconnectTimeout: string;
}

export function register(program: Command): void {
  program
    .command('monitor')
    .description(
      "A serial monitor like the Arduino IDE's: prints what the board sends, sends the lines you type (Ctrl-C quits)",
    )
    .option(
      '--port <port>',
      'serial port, or "auto": the one board plugged in, else the one simulated board',
      'auto',
    )
    .option('--baud <rate>', "baud rate, as the sketch's Serial.begin()", '9600')
    .option('--eol <ending>', 'what Enter sends after the line: lf, crlf or none', 'lf')
    .option('--timestamps', 'prefix each line received with the time it arrived (HH:MM:SS.mmm -> )')
    .option(
      '--reconnect-timeout <seconds>',
      'how long to wait for a port that went away (a reset or an unplug) to come back',
      '60',
    )
    .addHelpText(
      'after',
      `
The port is reopened when it comes back after a board reset or replug. Lines read from a pipe are
sent the same way as typed ones; the end of the input does not stop the monitor (Ctrl-C does), so
"echo ping | boardfleet monitor" shows the answer.

Examples:
  boardfleet monitor --port /dev/ttyACM0 --baud 115200
  boardfleet bench start uno && boardfleet monitor --port auto --timestamps`,
    )
    .action(async (flags: MonitorFlags) => {
      const settings = parseMonitorSettings(flags);
      const say = (line: string) => process.stderr.write(`${line}\n`);
      const path = await resolvePort(flags.port, undefined, { onNotice: say });
      const monitor = await openSerialMonitor({
        ...settings,
        path,
        output: (bytes) => process.stdout.write(bytes),
        status: say,
      });
      const interrupt = () => void monitor.close('Ctrl-C');
      process.on('SIGINT', interrupt);
      const input = createInterface({ input: process.stdin, crlfDelay: Infinity });
      input.on('line', (line) => {
        void monitor.send(line).then((sent) => {
          if (!sent) say(`-- not sent, ${path} is disconnected: ${line} --`);
        });
      });
      try {
        await monitor.done;
      } finally {
        process.off('SIGINT', interrupt);
        input.close();
        process.stdin.destroy();
      }
    });
}
