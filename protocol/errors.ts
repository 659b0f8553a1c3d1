/**
 * An error a person can act on. `code` is stable (scripts, HTTP mapping, failure reasons sent
 * over MQTT); `message` says what happened and what to try.
 */
export class BoardfleetError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'BoardfleetError';
  }
}

export function isBoardfleetError(error: unknown): error is BoardfleetError {
  return error instanceof BoardfleetError;
}
