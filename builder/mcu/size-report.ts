import { BoardfleetError } from '../../protocol/errors.ts';

export interface SizeReport {
  /** Bytes written to flash: code plus the initial values of initialised variables. */
  flashBytes: number;
  flashLimit: number;
  /** Bytes of RAM taken before the stack: initialised plus zeroed variables. */
  ramBytes: number;
  ramLimit: number;
}

/**
 * Parses `avr-size --format=berkeley` or `arm-none-eabi-size --format=berkeley` output (a header
 * line, then text data bss dec hex name): flash holds text and the initial values in data.
 */
export function parseBerkeleySize(
  output: string,
  limits: { flashLimit: number; ramLimit: number },
): SizeReport {
  const row = output.trim().split('\n')[1]?.trim().split(/\s+/);
  const [text, data, bss] = (row ?? []).map(Number);
  if (text === undefined || data === undefined || bss === undefined || [text, data, bss].some(Number.isNaN)) {
    throw new BoardfleetError('build-failed', `Could not read the size tool's output:\n${output}`);
  }
  return { flashBytes: text + data, ramBytes: data + bss, ...limits };
}

/** Refuses an image that cannot fit, before anything tries to flash it. */
export function assertFits(report: SizeReport, what: string, boardId: string): void {
  if (report.flashBytes > report.flashLimit) {
    throw new BoardfleetError(
      'firmware-too-big',
      `${what} needs ${report.flashBytes} bytes of flash but board ${boardId} has room for ${report.flashLimit} ` +
        `(${report.flashBytes - report.flashLimit} bytes too many). Nothing was flashed.`,
    );
  }
  if (report.ramBytes > report.ramLimit) {
    throw new BoardfleetError(
      'firmware-too-big',
      `${what} needs ${report.ramBytes} bytes of RAM for its variables but board ${boardId} has ${report.ramLimit} ` +
        `(${report.ramBytes - report.ramLimit} bytes too many). Nothing was flashed.`,
    );
  }
}

export function formatSizeReport(report: SizeReport): string {
  const percent = (used: number, limit: number) => `${((100 * used) / limit).toFixed(1)}%`;
  return (
    `flash ${report.flashBytes} of ${report.flashLimit} bytes (${percent(report.flashBytes, report.flashLimit)}), ` +
    `RAM ${report.ramBytes} of ${report.ramLimit} bytes (${percent(report.ramBytes, report.ramLimit)})`
  );
}
